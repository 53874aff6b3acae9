# OCSP (ocsp_test.py): stapling seen by openssl s_client -status, and peers checked against
# openssl ocsp -index -port and misbehaving responders (slow, forged, foreign, oversize).
ktlsd_add_integration_test(integration.ocsp ocsp_test.py
	TESTS staple staple_errors peer reload slow untrusted)
