package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); builds
// from a checkout fall back to the module's build information.
var version = ""

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "valuechip",
		Short: "Emulate a stored-value IC chip and drive it, or a real card, through PC/SC",
		Long: `valuechip emulates a stored-value IC chip (an electronic purse) at the ISO 7816
APDU level and drives it, or a real card, through PC/SC readers.

Readers are named by PC/SC index or name fragment, or one of:
  emu:PATH       the in-process emulated card whose state lives in PATH
  tcp:HOST:PORT  a card served by 'valuechip emulate --listen HOST:PORT'
  replay:FILE    a recorded session (valuechip send --record FILE)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newVersion(), newATR(), newReaders(), newSend(), newEmulate(), newBench(), newScript(), newShell(), newGP(), newLoadFile())
	root.AddCommand(newModules())
	root.AddCommand(newPurse())
	root.AddCommand(newKeysCmd())
	root.AddCommand(newTerminalCmd())
	root.AddCommand(newHotlistCmd())
	root.AddCommand(newProvisionCmd())
	root.AddCommand(newWalletCmd())
	root.AddCommand(newUploadCmd())
	root.AddCommand(newCardCmd())
	root.AddCommand(newReportCmd())
	root.AddCommand(newServerCmd())
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "valuechip", versionString())
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
