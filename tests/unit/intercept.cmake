# --intercept parsing (daemon/conf/intercept.c); sorted after daemon.cmake, which defines
# ktlsd_unit_test.
ktlsd_unit_test(conf intercept)
