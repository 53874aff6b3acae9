# A client certificate whose names carry CR/LF and a fake log line cannot forge a log line
# (logfmt and JSON, refused and accepted).
ktlsd_add_integration_test(integration.log_forge log_forge_test.py TIMEOUT 120)
