// Package packaging holds what installs ptrelay on a host: the systemd unit (ptrelay.service), the example
// configuration the Debian package installs (ptrelay.toml; scripts/build-deb makes the package), and the tests
// that check them with systemd's own tools, dpkg-deb and lintian. There is no Go code to import here.
package packaging
