package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/apdu"
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/reader/connect"
)

// gpOptions are the flags every `gp` subcommand shares: where the card is,
// which keys, which security domain and level.
type gpOptions struct {
	reader           string
	trace            bool
	key              string
	keyENC           string
	keyMAC           string
	keyDEK           string
	keyFile          string
	masterKey        string
	testKey          bool
	kvn              string
	level            string
	sd               string
	noChallengeCheck bool
	maxData          int

	getenv func(string) string // os.Getenv; tests replace it
}

func newGP() *cobra.Command {
	o := &gpOptions{getenv: os.Getenv}
	cmd := &cobra.Command{
		Use:   "gp",
		Short: "Manage card content through a GlobalPlatform security domain (SCP03)",
		Long: `Open an SCP03 secure channel to the card's Issuer Security Domain (or --sd)
and manage its content: list it, load and install, delete, put keys,
personalise, lock and unlock applications, change the card life cycle.

Every command after the handshake is protected at --level:
  none   no secure messaging (authenticated only)     00
  cmac   C-MAC                                         01
  cdec   C-MAC + command encryption (default)          03
  rmac   C-MAC + R-MAC                                 11
  cdec+rmac                                            13
  renc   C-MAC + C-DEC + R-MAC + response encryption   33
or the hex value of GP Amendment D Table 7-3.

Keys, first match wins:
  --key HEX                 one AES key as Key-ENC, Key-MAC and Key-DEK
  --key-enc/--key-mac/--key-dek HEX
  --key-file FILE           JSON: {"enc","mac","dek","kvn"}, {"key"}, or {"master"}
  --master-key HEX          diversified per card by its KDD (docs/gp.md)
  --test-key                the public test key 404142...4F, with a warning
  $VALUECHIP_GP_KEY, $VALUECHIP_GP_KEY_ENC/_MAC/_DEK, $VALUECHIP_GP_MASTER_KEY
Keys on the command line are visible to other users of the machine (ps);
prefer the environment or a key file readable only by you.`,
		Example: `  valuechip gp info --reader emu:card.json --test-key
  valuechip gp list --reader "Virtual PCD 00 00" --key-file keys.json --json
  valuechip gp install --reader tcp:127.0.0.1:35999 --test-key --load-file purse.lf
  valuechip gp delete --related F0000000015055525345 --test-key`,
		Args: cobra.NoArgs,
	}
	f := cmd.PersistentFlags()
	f.StringVarP(&o.reader, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&o.trace, "trace", false, "trace every exchange on the wire on stderr (secrets masked)")
	f.StringVar(&o.key, "key", "", "one AES key (hex) for Key-ENC, Key-MAC and Key-DEK")
	f.StringVar(&o.keyENC, "key-enc", "", "Key-ENC (hex), with --key-mac and --key-dek")
	f.StringVar(&o.keyMAC, "key-mac", "", "Key-MAC (hex)")
	f.StringVar(&o.keyDEK, "key-dek", "", "Key-DEK (hex)")
	f.StringVar(&o.keyFile, "key-file", "", "JSON key file (see docs/gp.md)")
	f.StringVar(&o.masterKey, "master-key", "", "master key (hex): the card's keys are diversified from it with its KDD")
	f.BoolVar(&o.testKey, "test-key", false, "use the well-known GlobalPlatform test key 404142...4F (test cards only)")
	f.StringVar(&o.kvn, "kvn", "", "key version number in hex (default: the key file's, else 00 = the card's default)")
	f.StringVar(&o.level, "level", "cdec", "security level: none, cmac, cdec, rmac, cdec+rmac, renc, or hex 00/01/03/11/13/33")
	f.StringVar(&o.sd, "sd", "", "security domain AID (default the ISD, A000000151000000)")
	f.BoolVar(&o.noChallengeCheck, "no-challenge-check", false, "do not check a pseudo-random card challenge against the SD AID")
	f.IntVar(&o.maxData, "max-apdu", 0, "largest command data the reader takes before chaining (0: from the ATR)")
	cmd.AddCommand(newGPInfo(o), newGPList(o), newGPInstall(o), newGPDelete(o), newGPPutKey(o), newGPStoreData(o),
		newGPLock(o, true), newGPLock(o, false), newGPLifeCycle(o))
	return cmd
}

// keySource picks the keys from the flags, else the environment.
func (o *gpOptions) keySource(stderr io.Writer) (hostgp.KeySource, byte, error) {
	split := o.keyENC != "" || o.keyMAC != "" || o.keyDEK != ""
	if split && (o.keyENC == "" || o.keyMAC == "" || o.keyDEK == "") {
		return nil, 0, usagef("--key-enc, --key-mac and --key-dek go together")
	}
	n := 0
	for _, set := range []bool{o.testKey, o.key != "", split, o.keyFile != "", o.masterKey != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, 0, usagef("give one of --key, --key-enc/--key-mac/--key-dek, --key-file, --master-key, --test-key")
	}
	switch {
	case o.testKey:
		fmt.Fprintln(stderr, "warning: using the well-known GlobalPlatform test key 404142...4F (--test-key): anyone can open a secure channel to a card that keeps it; never leave it on a card that holds value")
		return hostgp.TestKeys(), 0, nil
	case o.key != "":
		k, err := hostgp.ParseKey("--key", o.key)
		if err != nil {
			return nil, 0, usageError{err}
		}
		return hostgp.SingleKey(k), 0, nil
	case o.keyENC != "":
		var keys scp03.StaticKeys
		var err error
		for _, k := range []struct {
			name, hex string
			dst       *scp03.Key
		}{{"--key-enc", o.keyENC, &keys.ENC}, {"--key-mac", o.keyMAC, &keys.MAC}, {"--key-dek", o.keyDEK, &keys.DEK}} {
			if *k.dst, err = hostgp.ParseKey(k.name, k.hex); err != nil {
				return nil, 0, usageError{err}
			}
		}
		if err := keys.Check(); err != nil {
			return nil, 0, usagef("--key-enc/--key-mac/--key-dek: %v", err)
		}
		return hostgp.Static(keys), 0, nil
	case o.keyFile != "":
		kf, err := hostgp.LoadKeyFile(o.keyFile)
		if err != nil {
			return nil, 0, err
		}
		return kf.Keys, kf.KeyVersion, nil
	case o.masterKey != "":
		k, err := hostgp.ParseKey("--master-key", o.masterKey)
		if err != nil {
			return nil, 0, usageError{err}
		}
		return hostgp.Diversified(scp03.StaticKeys{ENC: k, MAC: k, DEK: k}), 0, nil
	}
	src, ok, err := hostgp.FromEnv(o.getenv)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, usagef("no keys: give --key, --key-file or --master-key, set %s, or use --test-key on a test card", hostgp.EnvKey)
	}
	return src, 0, nil
}

// config turns the flags into a host configuration.
func (o *gpOptions) config(stderr io.Writer) (hostgp.Config, error) {
	keys, fileKVN, err := o.keySource(stderr)
	if err != nil {
		return hostgp.Config{}, err
	}
	cfg := hostgp.Config{Keys: keys, KeyVersion: fileKVN, NoChallengeCheck: o.noChallengeCheck}
	if o.kvn != "" {
		if cfg.KeyVersion, err = parseByte("--kvn", o.kvn); err != nil {
			return hostgp.Config{}, err
		}
	}
	if cfg.Level, err = parseLevel(o.level); err != nil {
		return hostgp.Config{}, err
	}
	if o.sd != "" {
		if cfg.SD, err = parseAID("--sd", o.sd); err != nil {
			return hostgp.Config{}, err
		}
	}
	return cfg, nil
}

// session opens the reader and the secure channel; close releases both.
func (o *gpOptions) session(cmd *cobra.Command) (s *hostgp.Session, closeFn func(), err error) {
	cfg, err := o.config(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	ctx := cmd.Context()
	conn, err := connect.Open(ctx, o.reader, connect.Options{})
	if err != nil {
		return nil, nil, err
	}
	opts := connect.StackOptions{MaxData: o.maxData}
	if o.trace {
		opts.Trace = cmd.ErrOrStderr()
	}
	s, err = hostgp.Open(ctx, connect.Stack(conn, opts), cfg)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return s, func() { s.Close(); conn.Close() }, nil
}

// run opens a session, calls f and closes it.
func (o *gpOptions) run(cmd *cobra.Command, f func(ctx context.Context, s *hostgp.Session) error) error {
	s, closeFn, err := o.session(cmd)
	if err != nil {
		return err
	}
	defer closeFn()
	return f(cmd.Context(), s)
}

var levelWords = map[string]scp03.SecurityLevel{
	"none": scp03.LevelNone,
	"cmac": scp03.LevelCMAC, "mac": scp03.LevelCMAC,
	"cdec": scp03.LevelCMAC | scp03.LevelCDEC, "enc": scp03.LevelCMAC | scp03.LevelCDEC,
	"rmac": scp03.LevelCMAC | scp03.LevelRMAC,
	"renc": scp03.LevelAll, "all": scp03.LevelAll,
}

// parseLevel reads --level: words joined by "+" (each implying what it
// needs: cdec and rmac imply cmac, renc implies all) or a hex byte.
func parseLevel(s string) (scp03.SecurityLevel, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 8); err == nil && len(strings.TrimPrefix(s, "0x")) == 2 {
		l := scp03.SecurityLevel(v)
		if !l.Valid() {
			return 0, usagef("--level %s: not a level of GP Amendment D Table 7-3 (00, 01, 03, 11, 13, 33)", s)
		}
		return l, nil
	}
	var l scp03.SecurityLevel
	for _, w := range strings.Split(s, "+") {
		v, ok := levelWords[w]
		if !ok {
			return 0, usagef("--level %q: use none, cmac, cdec, rmac, cdec+rmac, renc, or hex 00/01/03/11/13/33", s)
		}
		l |= v
	}
	if !l.Valid() {
		return 0, usagef("--level %q is not a valid combination", s)
	}
	return l, nil
}

func parseByte(name, s string) (byte, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 8)
	if err != nil {
		return 0, usagef("%s %q: want one hex byte, e.g. 30", name, s)
	}
	return byte(v), nil
}

func parseHex(name, s string) ([]byte, error) {
	b, err := apdu.DecodeHex(s)
	if err != nil {
		return nil, usagef("%s: %v", name, err)
	}
	return b, nil
}

func parseAID(name, s string) ([]byte, error) {
	b, err := parseHex(name, s)
	if err != nil {
		return nil, err
	}
	if len(b) < gpwire.MinAIDLen || len(b) > gpwire.MaxAIDLen {
		return nil, usagef("%s %s: an AID has 5 to 16 bytes, this has %d", name, s, len(b))
	}
	return b, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func hexs(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// ---- info ----

type infoJSON struct {
	SD              string        `json:"sd"`
	KeyVersion      string        `json:"key_version"`
	SCP             string        `json:"scp"`
	I               string        `json:"i"`
	Level           string        `json:"level"`
	KDD             string        `json:"kdd"`
	SequenceCounter string        `json:"sequence_counter,omitempty"`
	LifeCycle       string        `json:"card_life_cycle,omitempty"`
	LifeCycleName   string        `json:"card_life_cycle_name,omitempty"`
	Privileges      string        `json:"isd_privileges,omitempty"`
	GPVersion       string        `json:"gp_version,omitempty"`
	SCPs            []string      `json:"card_scps,omitempty"`
	IIN             string        `json:"iin,omitempty"`
	CIN             string        `json:"cin,omitempty"`
	CPLC            *gpwire.CPLC  `json:"cplc,omitempty"`
	Keys            []keyInfoJSON `json:"keys,omitempty"`
}

type keyInfoJSON struct {
	ID      string   `json:"id"`
	Version string   `json:"version"`
	Types   []string `json:"components"`
}

func newGPInfo(o *gpOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the card's identification: CPLC, card data, keys, life cycle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				ci, err := s.Info(ctx)
				if err != nil {
					return err
				}
				j := infoJSON{
					SD: hexs(ci.SD), KeyVersion: fmt.Sprintf("%02X", ci.KeyVersion), SCP: "03", I: fmt.Sprintf("%02X", byte(ci.I)),
					Level: ci.Level.String(), KDD: hexs(ci.KDD), SequenceCounter: hexs(ci.SequenceCounter),
					IIN: hexs(ci.IIN), CIN: hexs(ci.CIN), CPLC: ci.CPLC,
				}
				if ci.ISD != nil {
					j.LifeCycle = fmt.Sprintf("%02X", ci.ISD.LifeCycle)
					j.LifeCycleName = gpwire.LifeCycleName(gpwire.KindCard, ci.ISD.LifeCycle)
					j.Privileges = ci.ISD.Privs().String()
				}
				if ci.CardData != nil {
					j.GPVersion = ci.CardData.VersionString()
					for _, sc := range ci.CardData.SCPs {
						j.SCPs = append(j.SCPs, fmt.Sprintf("SCP%02X i=%02X", sc.ID, sc.I))
					}
				}
				for _, k := range ci.Keys {
					kj := keyInfoJSON{ID: fmt.Sprintf("%02X", k.ID), Version: fmt.Sprintf("%02X", k.Version)}
					for _, c := range k.Components {
						kj.Types = append(kj.Types, fmt.Sprintf("%s-%d", gpwire.KeyTypeName(c.Type), c.Length))
					}
					j.Keys = append(j.Keys, kj)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					return writeJSON(out, j)
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				row := func(k, v string) {
					if v != "" {
						fmt.Fprintf(tw, "%s\t%s\n", k, v)
					}
				}
				row("Security domain", j.SD)
				row("Secure channel", fmt.Sprintf("SCP03 i=%s, key version %s, level %s", j.I, j.KeyVersion, j.Level))
				row("KDD", j.KDD)
				row("Sequence counter", j.SequenceCounter)
				if j.LifeCycle != "" {
					row("Card life cycle", fmt.Sprintf("%s (%s)", j.LifeCycleName, j.LifeCycle))
				}
				row("ISD privileges", j.Privileges)
				if j.GPVersion != "" {
					row("GlobalPlatform", fmt.Sprintf("%s (%s)", j.GPVersion, strings.Join(j.SCPs, ", ")))
				}
				row("IIN", j.IIN)
				row("CIN", j.CIN)
				for _, k := range ci.Keys {
					row("Key", k.String())
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if ci.CPLC != nil {
					fmt.Fprintln(out, "CPLC")
					tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					for _, f := range ci.CPLC.Fields() {
						fmt.Fprintf(tw, "  %s\t%s\n", f[0], f[1])
					}
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// ---- list ----

type entryJSON struct {
	Kind          string   `json:"kind"`
	AID           string   `json:"aid"`
	LifeCycle     string   `json:"life_cycle"`
	LifeCycleName string   `json:"life_cycle_name"`
	Privileges    string   `json:"privileges,omitempty"`
	PrivNames     []string `json:"privilege_names,omitempty"`
	LoadFile      string   `json:"load_file,omitempty"`
	Version       string   `json:"version,omitempty"`
	Modules       []string `json:"modules,omitempty"`
	SD            string   `json:"security_domain,omitempty"`
}

func entryOf(kind gpwire.Kind, e gpwire.RegistryEntry) entryJSON {
	if kind == gpwire.KindApplication && e.Privs().Has(gpwire.PrivSecurityDomain) {
		kind = gpwire.KindSecurityDomain
	}
	j := entryJSON{Kind: kind.String(), AID: hexs(e.AID), LifeCycle: fmt.Sprintf("%02X", e.LifeCycle),
		LifeCycleName: gpwire.LifeCycleName(kind, e.LifeCycle), LoadFile: hexs(e.LoadFileAID), SD: hexs(e.SecurityDomainAID)}
	if len(e.Privileges) > 0 {
		j.Privileges = hexs(e.Privileges)
		j.PrivNames = e.Privs().Names()
	}
	if len(e.Version) == 2 {
		j.Version = fmt.Sprintf("%d.%d", e.Version[0], e.Version[1])
	} else if len(e.Version) > 0 {
		j.Version = hexs(e.Version)
	}
	for _, m := range e.Modules {
		j.Modules = append(j.Modules, hexs(m))
	}
	return j
}

func newGPList(o *gpOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the security domains, applications and load files on the card",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				reg, err := s.List(ctx)
				if err != nil {
					return err
				}
				var all []entryJSON
				if reg.ISD != nil {
					all = append(all, entryOf(gpwire.KindCard, *reg.ISD))
				}
				for _, e := range reg.Applications {
					all = append(all, entryOf(gpwire.KindApplication, e))
				}
				for _, e := range reg.LoadFiles {
					all = append(all, entryOf(gpwire.KindLoadFile, e))
				}
				out := cmd.OutOrStdout()
				if asJSON {
					if all == nil {
						all = []entryJSON{}
					}
					return writeJSON(out, all)
				}
				for _, e := range all {
					label := map[string]string{"ISD": "ISD", "application": "APP", "security domain": "SSD", "load file": "PKG"}[e.Kind]
					fmt.Fprintf(out, "%-4s %s  %s", label+":", e.AID, e.LifeCycleName)
					if e.Version != "" {
						fmt.Fprintf(out, "  version %s", e.Version)
					}
					fmt.Fprintln(out)
					if e.Privileges != "" {
						names := "none"
						if len(e.PrivNames) > 0 {
							names = strings.Join(e.PrivNames, ", ")
						}
						fmt.Fprintf(out, "     privileges %s (%s)\n", e.Privileges, names)
					}
					if e.LoadFile != "" {
						fmt.Fprintf(out, "     from %s\n", e.LoadFile)
					}
					for _, m := range e.Modules {
						fmt.Fprintf(out, "     module %s\n", m)
					}
				}
				if len(all) == 0 {
					fmt.Fprintln(out, "(the card lists nothing)")
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// ---- install ----

func newGPInstall(o *gpOptions) *cobra.Command {
	var (
		loadFile, pkg, instance, privileges, params string
		modules                                     []string
		blockSize                                   int
		loadOnly, notSelectable                     bool
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Load a load file and install its modules, or install from a package already on the card",
		Long: `With --load-file, load the file (INSTALL [for load], LOAD) and install each
module it names as an application with the module's AID (or only the --module
ones; --instance renames a single one; --load-only installs nothing).

Without --load-file, install --module from --package, already on the card.

Load files are made with 'valuechip loadfile build' (docs/loadfile.md).`,
		Example: `  valuechip gp install --test-key --load-file purse.lf
  valuechip gp install --test-key --load-file purse.lf --module F000000001505552534501 --instance F000000001505552534502 --params 0102
  valuechip gp install --test-key --package F0000000015055525345 --module F000000001505552534501 --instance F000000001505552534503`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec := hostgp.InstallSpec{NotSelectable: notSelectable}
			var err error
			if privileges != "" {
				if spec.Privileges, err = parseHex("--privileges", privileges); err != nil {
					return err
				}
				if n := len(spec.Privileges); n != 1 && n != 3 {
					return usagef("--privileges: 1 or 3 bytes, e.g. 00 or 800000")
				}
			}
			if params != "" {
				if spec.Params, err = parseHex("--params", params); err != nil {
					return err
				}
			}
			var mods [][]byte
			for _, m := range modules {
				aid, err := parseAID("--module", m)
				if err != nil {
					return err
				}
				mods = append(mods, aid)
			}
			if instance != "" {
				if spec.ApplicationAID, err = parseAID("--instance", instance); err != nil {
					return err
				}
			}
			if loadFile == "" {
				if pkg == "" || len(mods) != 1 {
					return usagef("give --load-file FILE, or --package AID and one --module AID to install from a package on the card")
				}
				if spec.LoadFileAID, err = parseAID("--package", pkg); err != nil {
					return err
				}
				spec.ModuleAID = mods[0]
				return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
					if err := s.Install(ctx, spec); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "installed %X\n", orAID(spec.ApplicationAID, spec.ModuleAID))
					return nil
				})
			}
			file, err := os.ReadFile(loadFile)
			if err != nil {
				return err
			}
			lf, err := gpwire.ParseLoadFile(file)
			if err != nil {
				return fmt.Errorf("%s: %w", loadFile, err)
			}
			opts := hostgp.LoadOptions{BlockSize: blockSize}
			var m gpwire.Manifest
			if m, err = lf.Manifest(); err != nil {
				if pkg == "" {
					return fmt.Errorf("%s: %w (for a load file that is not a valuechip manifest, give --package)", loadFile, err)
				}
			}
			if pkg != "" {
				if opts.LoadFileAID, err = parseAID("--package", pkg); err != nil {
					return err
				}
			}
			if len(mods) == 0 && !loadOnly {
				for _, mod := range m.Modules {
					mods = append(mods, mod.AID)
				}
			}
			if loadOnly {
				mods = nil
			}
			if len(spec.ApplicationAID) > 0 && len(mods) != 1 {
				return usagef("--instance names one application: give exactly one --module")
			}
			var specs []hostgp.InstallSpec
			for _, mod := range mods {
				sp := spec
				sp.ModuleAID = mod
				specs = append(specs, sp)
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				if err := s.LoadAndInstall(ctx, file, opts, specs...); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "loaded %X", orAID(opts.LoadFileAID, m.PackageAID))
				if len(m.PackageAID) > 0 {
					fmt.Fprintf(out, " version %s", m.VersionString())
				}
				fmt.Fprintln(out)
				for _, sp := range specs {
					fmt.Fprintf(out, "installed %X\n", orAID(sp.ApplicationAID, sp.ModuleAID))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&loadFile, "load-file", "", "load file to load (valuechip format, docs/loadfile.md)")
	f.StringVar(&pkg, "package", "", "package (load file) AID: to install from a package on the card, or to name a non-valuechip load file")
	f.StringArrayVar(&modules, "module", nil, "module AID to install (repeatable; default: every module of the load file)")
	f.StringVar(&instance, "instance", "", "application AID of the new instance (default: the module AID)")
	f.StringVar(&privileges, "privileges", "", "privileges, 1 or 3 bytes hex (default 00)")
	f.StringVar(&params, "params", "", "application install parameters, hex (the value of tag C9)")
	f.IntVar(&blockSize, "block-size", 0, "LOAD block size (default 224)")
	f.BoolVar(&loadOnly, "load-only", false, "load without installing")
	f.BoolVar(&notSelectable, "not-selectable", false, "install without making selectable")
	return cmd
}

func orAID(a, b []byte) []byte {
	if len(a) > 0 {
		return a
	}
	return b
}

// ---- delete ----

func newGPDelete(o *gpOptions) *cobra.Command {
	var related bool
	cmd := &cobra.Command{
		Use:   "delete AID...",
		Short: "Delete applications, security domains or load files",
		Example: `  valuechip gp delete --test-key F000000001505552534501
  valuechip gp delete --test-key --related F0000000015055525345   # the package and its instances`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			aids, err := parseAIDs(args)
			if err != nil {
				return err
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				for _, aid := range aids {
					if err := s.Delete(ctx, aid, related); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %X\n", aid)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&related, "related", false, "also delete related objects (a load file's applications)")
	return cmd
}

// ---- put-key ----

func newGPPutKey(o *gpOptions) *cobra.Command {
	var (
		newKVN, replace, newKey, newENC, newMAC, newDEK, newKeyFile, dapKey string
	)
	cmd := &cobra.Command{
		Use:   "put-key",
		Short: "Add or replace an SCP03 key set, or load the DAP verification key",
		Long: `Add (default) or replace (--replace KVN) an SCP03 key set with version
--new-kvn. The new keys come from --new-key-file (a key file with static keys),
--new-key, or --new-enc/--new-mac/--new-dek; they are sent encrypted with
the current Key-DEK and checked against the card's key check values.

--dap-key PEM loads an issuer's P-256 public key for DAP verification
(key version 73 unless --new-kvn; docs/loadfile.md).`,
		Example: `  valuechip gp put-key --test-key --new-kvn 31 --new-key-file new-keys.json
  valuechip gp put-key --test-key --replace 30 --new-kvn 30 --new-key-file new-keys.json
  valuechip gp put-key --test-key --dap-key issuer-pub.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var kvn, old byte
			var err error
			if replace != "" {
				if old, err = parseByte("--replace", replace); err != nil {
					return err
				}
			}
			if newKVN != "" {
				if kvn, err = parseByte("--new-kvn", newKVN); err != nil {
					return err
				}
			}
			n := 0
			for _, set := range []bool{newKey != "", newENC != "" || newMAC != "" || newDEK != "", newKeyFile != "", dapKey != ""} {
				if set {
					n++
				}
			}
			if n > 1 {
				return usagef("give one of --new-key, --new-enc/--new-mac/--new-dek, --new-key-file, --dap-key")
			}
			if dapKey != "" {
				pub, err := hostgp.LoadDAPPublicKey(dapKey)
				if err != nil {
					return err
				}
				if newKVN == "" {
					kvn = gpwire.DAPKeyVersion
				}
				return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
					if err := s.PutDAPKey(ctx, kvn, old, pub); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "DAP key loaded as key version %02X\n", kvn)
					return nil
				})
			}
			if newKVN == "" {
				return usagef("--new-kvn is required (the version of the new key set, 01-7F)")
			}
			keys, err := newKeys(newKeyFile, newKey, newENC, newMAC, newDEK)
			if err != nil {
				return err
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				if err := s.PutKeys(ctx, kvn, old, keys); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key set %02X: %s\n", kvn, keys)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&newKVN, "new-kvn", "", "version of the new key set, hex 01-7F")
	f.StringVar(&replace, "replace", "", "key version to replace, hex (default: add a new key set)")
	f.StringVar(&newKey, "new-key", "", "one new AES key (hex) for ENC, MAC and DEK")
	f.StringVar(&newENC, "new-enc", "", "new Key-ENC (hex)")
	f.StringVar(&newMAC, "new-mac", "", "new Key-MAC (hex)")
	f.StringVar(&newDEK, "new-dek", "", "new Key-DEK (hex)")
	f.StringVar(&newKeyFile, "new-key-file", "", "key file with the new static keys (JSON, docs/gp.md)")
	f.StringVar(&dapKey, "dap-key", "", "PEM public key or certificate (P-256) to load for DAP verification")
	return cmd
}

// newKeys reads the new key set of put-key.
func newKeys(file, one, enc, mac, dek string) (scp03.StaticKeys, error) {
	switch {
	case file != "":
		kf, err := hostgp.LoadKeyFile(file)
		if err != nil {
			return scp03.StaticKeys{}, err
		}
		// Static keys answer without looking at the card.
		return kf.Keys.StaticKeys(context.Background(), hostgp.CardIdentity{})
	case one != "":
		k, err := hostgp.ParseKey("--new-key", one)
		if err != nil {
			return scp03.StaticKeys{}, usageError{err}
		}
		return scp03.StaticKeys{ENC: k, MAC: k, DEK: k}, nil
	case enc != "" || mac != "" || dek != "":
		var keys scp03.StaticKeys
		var err error
		if keys.ENC, err = hostgp.ParseKey("--new-enc", enc); err != nil {
			return keys, usageError{err}
		}
		if keys.MAC, err = hostgp.ParseKey("--new-mac", mac); err != nil {
			return keys, usageError{err}
		}
		if keys.DEK, err = hostgp.ParseKey("--new-dek", dek); err != nil {
			return keys, usageError{err}
		}
		if err := keys.Check(); err != nil {
			return keys, usagef("new keys: %v", err)
		}
		return keys, nil
	}
	return scp03.StaticKeys{}, usagef("give the new keys: --new-key-file, --new-key, or --new-enc/--new-mac/--new-dek")
}

// ---- store-data ----

func newGPStoreData(o *gpOptions) *cobra.Command {
	var format string
	var encrypt bool
	cmd := &cobra.Command{
		Use:   "store-data AID BLOCK...",
		Short: "Personalise an application: INSTALL [for personalization], then STORE DATA blocks",
		Long: `Send each BLOCK (hex) as one STORE DATA command to application AID, numbered
from 00, the last flagged. --format says what the blocks hold (dgi, ber, or
none); with --format dgi, --encrypt encrypts each DGI's data under Key-DEK
(AES-CBC, zero ICV, 80-padding; docs/gp.md).`,
		Example: `  valuechip gp store-data --test-key --format dgi --encrypt F000000001505552534501 8001050102030405`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			aid, err := parseAID("AID", args[0])
			if err != nil {
				return err
			}
			opts := hostgp.StoreOptions{EncryptDGIs: encrypt}
			switch format {
			case "dgi":
				opts.Format = gpwire.StoreFormatDGI
			case "ber", "tlv":
				opts.Format = gpwire.StoreFormatBERTLV
			case "none", "":
				opts.Format = gpwire.StoreFormatNone
			default:
				return usagef("--format %q: use dgi, ber or none", format)
			}
			if encrypt && opts.Format != gpwire.StoreFormatDGI {
				return usagef("--encrypt needs --format dgi")
			}
			var blocks [][]byte
			for i, a := range args[1:] {
				b, err := parseHex(fmt.Sprintf("block %d", i+1), a)
				if err != nil {
					return err
				}
				if opts.Format == gpwire.StoreFormatDGI {
					if _, err := gpwire.ParseDGIs(b); err != nil {
						return usagef("block %d: %v", i+1, err)
					}
				}
				blocks = append(blocks, b)
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				if err := s.StoreData(ctx, aid, opts, blocks...); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stored %d block(s) in %X\n", len(blocks), aid)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "none", "block format: dgi, ber or none")
	cmd.Flags().BoolVar(&encrypt, "encrypt", false, "encrypt DGI data under Key-DEK (needs --format dgi)")
	return cmd
}

// ---- lock / unlock ----

func newGPLock(o *gpOptions, lock bool) *cobra.Command {
	use, short := "lock AID...", "Lock applications or security domains (SET STATUS)"
	if !lock {
		use, short = "unlock AID...", "Unlock applications or security domains (SET STATUS)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			aids, err := parseAIDs(args)
			if err != nil {
				return err
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				for _, aid := range aids {
					var err error
					if lock {
						err = s.Lock(ctx, aid)
					} else {
						err = s.Unlock(ctx, aid)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%sed %X\n", strings.Fields(use)[0], aid)
				}
				return nil
			})
		},
	}
}

// ---- lifecycle ----

var cardStates = map[string]byte{
	"initialized": gpwire.CardInitialized,
	"secured":     gpwire.CardSecured,
	"card_locked": gpwire.CardLocked, "locked": gpwire.CardLocked,
	"terminated": gpwire.CardTerminated,
}

func newGPLifeCycle(o *gpOptions) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "lifecycle STATE",
		Short: "Set the card life cycle: initialized, secured, locked, terminated (or hex)",
		Long: `Set the card life cycle state through the ISD (SET STATUS P1 80): INITIALIZED
(07), SECURED (0F), CARD_LOCKED (7F) or TERMINATED (FF). TERMINATED is
irreversible and needs --yes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			state, ok := cardStates[strings.ToLower(args[0])]
			if !ok {
				b, err := parseByte("STATE", args[0])
				if err != nil {
					return usagef("state %q: use initialized, secured, locked, terminated, or a hex byte", args[0])
				}
				state = b
			}
			if state == gpwire.CardTerminated && !yes {
				return usagef("TERMINATED cannot be undone: the card will refuse everything afterwards; add --yes if you mean it")
			}
			return o.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				if err := s.SetCardLifeCycle(ctx, state); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "card life cycle %s (%02X)\n", gpwire.LifeCycleName(gpwire.KindCard, state), state)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm an irreversible change (TERMINATED)")
	return cmd
}

// ---- loadfile ----

func newLoadFile() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loadfile",
		Short: "Build and inspect load files for the valuechip chip (docs/loadfile.md)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newLoadFileBuild(), newLoadFileShow())
	return cmd
}

func newLoadFileBuild() *cobra.Command {
	var (
		pkg, version, signKey, dapSD, output string
		modules                              []string
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Write a load file naming a package and its built-in modules",
		Long: `Write a load file: a manifest naming the package AID, its version and each
module as AID:DIGEST (the 32-byte implementation digest the chip publishes),
optionally signed for DAP verification with a P-256 private key (PEM).`,
		Example: `  valuechip loadfile build --package F0000000015055525345 --version 1.0 \
      --module F000000001505552534501:<64 hex digits> -o purse.lf
  valuechip loadfile build ... --sign-key issuer.pem --dap-sd A000000151000000 -o purse.lf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pkg == "" || len(modules) == 0 || output == "" {
				return usagef("give --package AID, at least one --module AID:DIGEST, and -o FILE")
			}
			var m gpwire.Manifest
			var err error
			if m.PackageAID, err = parseAID("--package", pkg); err != nil {
				return err
			}
			if m.Version, err = gpwire.ParseVersion(version); err != nil {
				return usageError{err}
			}
			for _, spec := range modules {
				aidHex, digestHex, ok := strings.Cut(spec, ":")
				if !ok {
					return usagef("--module %q: want AID:DIGEST (64 hex digits of SHA-256)", spec)
				}
				var mod gpwire.ModuleRef
				if mod.AID, err = parseAID("--module", aidHex); err != nil {
					return err
				}
				d, err := parseHex("--module digest", digestHex)
				if err != nil {
					return err
				}
				if len(d) != gpwire.DigestLen {
					return usagef("--module %s: digest of %d bytes, want %d", aidHex, len(d), gpwire.DigestLen)
				}
				copy(mod.Digest[:], d)
				m.Modules = append(m.Modules, mod)
			}
			block, err := m.Bytes()
			if err != nil {
				return usageError{err}
			}
			var daps []gpwire.DAPBlock
			if signKey != "" {
				priv, err := hostgp.LoadDAPPrivateKey(signKey)
				if err != nil {
					return err
				}
				sd := gpwire.DefaultISDAID()
				if dapSD != "" {
					if sd, err = parseAID("--dap-sd", dapSD); err != nil {
						return err
					}
				}
				sig, err := gpwire.SignDAP(priv, block)
				if err != nil {
					return err
				}
				daps = append(daps, gpwire.DAPBlock{SecurityDomainAID: sd, Signature: sig})
			}
			file, err := gpwire.LoadFile{DAPs: daps, DataBlock: block}.Bytes()
			if err != nil {
				return err
			}
			if err := os.WriteFile(output, file, 0o644); err != nil {
				return err
			}
			h := gpwire.DataBlockHash(block)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d bytes, package %X version %s, %d module(s), data block hash %X",
				output, len(file), m.PackageAID, m.VersionString(), len(m.Modules), h)
			if len(daps) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), ", DAP for %X", daps[0].SecurityDomainAID)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&pkg, "package", "", "package (load file) AID")
	f.StringVar(&version, "version", "1.0", "package version MAJOR.MINOR")
	f.StringArrayVar(&modules, "module", nil, "module as AID:DIGEST (repeatable)")
	f.StringVar(&signKey, "sign-key", "", "PEM P-256 private key to sign a DAP with")
	f.StringVar(&dapSD, "dap-sd", "", "AID of the security domain the DAP is for (default the ISD)")
	f.StringVarP(&output, "output", "o", "", "file to write")
	return cmd
}

type loadFileJSON struct {
	Package string       `json:"package"`
	Version string       `json:"version"`
	Modules []moduleJSON `json:"modules"`
	Hash    string       `json:"data_block_hash"`
	DAPs    []dapJSON    `json:"daps,omitempty"`
	Size    int          `json:"size"`
}

type moduleJSON struct {
	AID    string `json:"aid"`
	Digest string `json:"digest"`
}

type dapJSON struct {
	SD        string `json:"security_domain"`
	Signature string `json:"signature"`
	Verified  *bool  `json:"verified,omitempty"`
}

func newLoadFileShow() *cobra.Command {
	var verifyKey string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Decode a load file; --verify-key checks its DAP signatures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			lf, err := gpwire.ParseLoadFile(file)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			m, err := lf.Manifest()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var pub *ecdsa.PublicKey
			if verifyKey != "" {
				if pub, err = hostgp.LoadDAPPublicKey(verifyKey); err != nil {
					return err
				}
			}
			h := lf.Hash()
			j := loadFileJSON{Package: hexs(m.PackageAID), Version: m.VersionString(), Hash: hexs(h[:]), Size: len(file)}
			for _, mod := range m.Modules {
				j.Modules = append(j.Modules, moduleJSON{AID: hexs(mod.AID), Digest: hexs(mod.Digest[:])})
			}
			failed := false
			for _, d := range lf.DAPs {
				dj := dapJSON{SD: hexs(d.SecurityDomainAID), Signature: hexs(d.Signature)}
				if pub != nil {
					ok := gpwire.VerifyDAP(pub, lf.DataBlock, d.Signature) == nil
					dj.Verified = &ok
					failed = failed || !ok
				}
				j.DAPs = append(j.DAPs, dj)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, j); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "package %s version %s (%d bytes)\n", j.Package, j.Version, j.Size)
				for _, mod := range j.Modules {
					fmt.Fprintf(out, "  module %s digest %s\n", mod.AID, mod.Digest)
				}
				fmt.Fprintf(out, "data block hash %s\n", j.Hash)
				for _, d := range j.DAPs {
					state := "not verified"
					if d.Verified != nil {
						state = map[bool]string{true: "signature OK", false: "SIGNATURE INVALID"}[*d.Verified]
					}
					fmt.Fprintf(out, "DAP for %s: %s\n", d.SD, state)
				}
			}
			if failed {
				return fmt.Errorf("%s: %w", args[0], gpwire.ErrBadSignature)
			}
			if pub != nil && len(lf.DAPs) == 0 {
				return fmt.Errorf("%s: no DAP block to verify", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&verifyKey, "verify-key", "", "PEM P-256 public key or certificate to verify DAPs with")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// parseAIDs parses command-line arguments that are all AIDs.
func parseAIDs(args []string) ([][]byte, error) {
	aids := make([][]byte, 0, len(args))
	for _, a := range args {
		aid, err := parseAID("AID", a)
		if err != nil {
			return nil, err
		}
		aids = append(aids, aid)
	}
	return aids, nil
}
