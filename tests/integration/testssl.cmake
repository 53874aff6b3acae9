# testssl.sh (Debian package testssl.sh) against ktlsd's server: no HIGH/CRITICAL finding.
ktlsd_add_integration_test(integration.testssl testssl_test.py TIMEOUT 600)
