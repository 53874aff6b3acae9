# ktlsd agent's sandbox options on the host (the sandbox and reload themselves run in the VM
# test, tests/vm/agent_nfs_test).
ktlsd_add_integration_test(integration.agent_sandbox agent_sandbox_test.py TESTS errors accepted)
