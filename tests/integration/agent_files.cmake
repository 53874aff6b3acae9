# ktlsd agent given a FIFO in a file's place: refused, not blocked on (host, before netlink).
ktlsd_add_integration_test(integration.agent_files agent_files_test.py TESTS fifo)
