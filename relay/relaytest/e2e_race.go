//go:build race

package relaytest

// raceEnabled builds the daemon with -race when the tests themselves run with it.
const raceEnabled = true
