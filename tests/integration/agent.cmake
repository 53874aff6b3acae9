# ktlsd agent on the host: option errors, and the refusal on a kernel without the handshake
# netlink family (the NFS-over-TLS cases run in tests/vm/agent.cmake).
ktlsd_add_integration_test(integration.agent agent_test.py TESTS errors no_family config admin)
