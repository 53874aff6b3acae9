# An idle daemon sleeps (idle_cpu_test.py): no thread spins while nothing happens.
ktlsd_add_integration_test(integration.idle_cpu idle_cpu_test.py TESTS idle_cpu)
