# Installation layout and the Debian package (scripts/package runs cpack -G DEB):
#   /usr/sbin/ktlsd, /usr/lib/systemd/system/ktlsd{,@}.service, /etc/ktlsd/ktlsd.conf
#   (a conffile), /usr/lib/modules-load.d/ktlsd.conf (the tls module at boot: the kernel
#   autoloads it for TCP_ULP only for CAP_NET_ADMIN, which ktlsd does not keep), the man
#   pages (docs/man/), README and examples (ktlsd.socket, Kubernetes) in /usr/share/doc/ktlsd.
include(GNUInstallDirs)
install(TARGETS ktlsd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(FILES deploy/ktlsd.service deploy/ktlsd@.service DESTINATION lib/systemd/system)
install(FILES deploy/ktlsd.conf DESTINATION /etc/ktlsd)
install(FILES deploy/modules-load.conf DESTINATION lib/modules-load.d RENAME ktlsd.conf)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES deploy/ktlsd.socket DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(DIRECTORY deploy/k8s DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

set(CPACK_PACKAGE_NAME ktlsd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "ktlsd maintainers <ktlsd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mutual TLS offload daemon using kernel TLS")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "mutual TLS offload daemon using kernel TLS
 ktlsd terminates or originates mutual TLS for plaintext services, checks SPIFFE
 identities, and hands the session keys to the kernel (kTLS) so records are encrypted
 and decrypted in the kernel; it relays with splice through io_uring.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # ktlsd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # libssl3, liburing2, libseccomp2, ... by dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
	${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
	${PROJECT_SOURCE_DIR}/deploy/debian/postinst
	${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
include(CPack)
