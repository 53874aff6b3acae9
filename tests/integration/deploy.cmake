# Deploying ktlsd (deploy_test.py, issue 16): --version, safe defaults for plaintext
# addresses, the sandbox (user, capabilities, Landlock, seccomp) on the real daemon,
# systemd units and notify, the man pages against the CLI help, the Kubernetes examples.
ktlsd_add_integration_test(integration.deploy deploy_test.py
	TESTS version unsafe sandbox sandbox_caps units notify activation
	man_options readme_options k8s)
# The Debian package installed by apt in a fresh Debian 12 chroot: a debootstrap the first
# time (cached in BUILD/deploy-cache), so it may take minutes.
ktlsd_add_integration_test(integration.deploy deploy_test.py TESTS package TIMEOUT 1200)
