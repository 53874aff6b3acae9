# --max-handshakes-per-second's token bucket (loop/admit.c); sorted after daemon.cmake,
# which defines ktlsd_unit_test.
ktlsd_unit_test(loop admit)
