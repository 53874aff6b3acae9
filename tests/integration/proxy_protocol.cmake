# --proxy-protocol: the PROXY v2 header a backend gets, also after resumption
# (proxy_protocol_test.py).
ktlsd_add_integration_test(integration.proxy_protocol proxy_protocol_test.py)
