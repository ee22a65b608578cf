package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"ptrelay/relay/dkim"
)

func dkimUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ptrelay dkim <verb> [flags]")
	fmt.Fprintln(w, "  ptrelay dkim keygen -domain D -selector S [-algo rsa|ed25519] [-bits 2048] [-out FILE]")
	fmt.Fprintln(w, "                       write a new private key (mode 0600, never over a file) and print its DNS record")
	fmt.Fprintln(w, "  ptrelay dkim show [-json] [-config FILE]")
	fmt.Fprintln(w, "                       the TXT record to publish for every key of [[dkim.keys]]")
}

func runDKIM(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "keygen" && args[0] != "show") {
		if len(args) > 0 && args[0] != "-h" && args[0] != "-help" && args[0] != "--help" {
			fmt.Fprintf(stderr, "ptrelay dkim: unknown verb %q\n", args[0])
		}
		dkimUsage(stderr)
		return exitError{2}
	}
	if args[0] == "keygen" {
		return dkimKeygen(args[1:], stdout, stderr)
	}
	return dkimShow(args[1:], stdout, stderr)
}

func dkimKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dkim keygen", stderr)
	fs.String("config", "", "ignored: keygen reads no configuration")
	domain := fs.String("domain", "", "the domain to sign for (d=), e.g. contoso.com")
	selector := fs.String("selector", "", "the selector (s=), e.g. ptr2026a: a new one for every key")
	algo := fs.String("algo", "rsa", "rsa (what every receiver verifies) or ed25519 (only as a second key)")
	bits := fs.Int("bits", 2048, "RSA key size: 2048 to 4096")
	out := fs.String("out", "", "where to write the key (default: DOMAIN.SELECTOR.pem in the current directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *domain == "" || *selector == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: ptrelay dkim keygen -domain D -selector S [-algo rsa|ed25519] [-bits 2048] [-out FILE]")
		return exitError{2}
	}
	d := strings.ToLower(strings.TrimSuffix(*domain, "."))
	if err := dkim.CheckNames(d, *selector); err != nil {
		return err
	}
	key, err := dkim.Generate(*algo, *bits)
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		path = d + "." + *selector + ".pem"
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	rec, err := dkim.RecordOf(*selector+"._domainkey."+d, key.Public())
	if err != nil {
		return err
	}
	if err := dkim.WriteKeyFile(path, key); err != nil {
		return err
	}
	kind := "Ed25519"
	if rec.Algorithm == "rsa" {
		kind = fmt.Sprintf("RSA-%d", rec.Bits)
	}
	fmt.Fprintf(stdout, "Wrote the %s private key to %s (mode 0600).\n\n", kind, path)
	fmt.Fprintf(stdout, "1. Publish this TXT record in the DNS of %s. A DNS panel takes the value as it is; a zone file\n", d)
	fmt.Fprintf(stdout, "   wants it as one record of several strings of at most 255 bytes, as below:\n\n")
	fmt.Fprintf(stdout, "   name:  %s\n   type:  TXT\n   value: %s\n\n", rec.Name, rec.Value)
	fmt.Fprintf(stdout, "   %s\n\n", strings.ReplaceAll(rec.ZoneLines(), "\n", "\n   "))
	fmt.Fprintf(stdout, "2. Add the key to ptrelay's configuration (with the packaged systemd unit, hand the file to the\n")
	fmt.Fprintf(stdout, "   service with LoadCredential= and name it under /run/credentials/ptrelay.service/; see docs/install.md):\n\n")
	fmt.Fprintf(stdout, "   [[dkim.keys]]\n   domain = %q\n   selector = %q\n   private_key_file = %q\n\n", d, *selector, path)
	fmt.Fprintf(stdout, "3. Once the record is published: ptrelay check -domain %s, then systemctl reload ptrelay.\n", d)
	if rec.Algorithm == "ed25519" {
		fmt.Fprintf(stdout, "\nGmail and most receivers ignore Ed25519 signatures: keep an RSA key for %s beside this one.\n", d)
	}
	return nil
}

// dkimShowKey is one line of `ptrelay dkim show -json`.
type dkimShowKey struct {
	Domain         string `json:"domain"`
	Selector       string `json:"selector"`
	PrivateKeyFile string `json:"private_key_file"`
	*dkim.Record
	Error string `json:"error,omitempty"`
}

func dkimShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dkim show", stderr)
	path := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	s := dkim.LoadEach(cfg)
	var list []dkimShowKey
	failed := false
	for _, k := range s.Keys() {
		item := dkimShowKey{Domain: k.Domain, Selector: k.Selector, PrivateKeyFile: k.File}
		if k.ReadErr != nil {
			item.Error, failed = k.ReadErr.Error(), true
		} else if rec, err := k.Record(); err != nil {
			item.Error, failed = err.Error(), true
		} else {
			item.Record = &rec
		}
		list = append(list, item)
	}
	if *asJSON {
		if err := writeJSON(stdout, orEmpty(list)); err != nil {
			return err
		}
	} else {
		if len(list) == 0 {
			fmt.Fprintln(stdout, "No [[dkim.keys]] in the configuration: nothing is signed. `ptrelay dkim keygen` makes a key.")
		}
		for i, item := range list {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			if item.Record == nil {
				fmt.Fprintf(stdout, "%s._domainkey.%s: %s\n", item.Selector, item.Domain, item.Error)
				continue
			}
			fmt.Fprintf(stdout, "%s (%s, %s)\n", item.Name, strings.ToUpper(item.Algorithm), item.PrivateKeyFile)
			fmt.Fprintf(stdout, "  value: %s\n  %s\n", item.Value, strings.ReplaceAll(item.ZoneLines(), "\n", "\n  "))
		}
	}
	if failed {
		return exitError{1}
	}
	return nil
}
