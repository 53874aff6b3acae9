# --intercept: sk_lookup steering on the host kernel (steer_test.py; skips without root);
# relay_option: --relay values and errors where the kernel has no kTLS.
ktlsd_add_integration_test(integration.steer steer_test.py
	TESTS served proxy_v2 gone_on_exit bad_values unprivileged relay_option)
