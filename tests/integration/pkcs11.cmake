# PKCS#11 keys through pkcs11-provider with a SoftHSM2 token made by the test (pkcs11_test.py).
ktlsd_add_integration_test(integration.pkcs11 pkcs11_test.py TESTS pkcs11 errors)
