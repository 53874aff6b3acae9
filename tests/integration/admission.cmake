# Admission control (issue #15): --max-handshakes-per-second pauses accepting past the
# rate, counted and logged; a bad value is a FILE:LINE error. Handshakes run on each worker's
# SCHED_IDLE handshake thread.
ktlsd_add_integration_test(integration.admission admission_test.py TESTS rate rate_config rate_client idle_cpu hs_thread)
