// Package packaging holds what installs ptrelay on a host: the systemd unit (ptrelay.service) and the tests
// that check it with systemd's own tools. There is no Go code to import here.
package packaging
