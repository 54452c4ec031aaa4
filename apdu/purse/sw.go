package purse

import (
	"fmt"

	"github.com/valuechip/valuechip/apdu"
)

// Status is one status word a command can answer and what it means for
// that command (docs/purse.md §7).
type Status struct {
	SW      apdu.SW
	Meaning string
}

// General status words any purse command may answer (docs/purse.md §7.1).
var generalStatuses = []Status{
	{apdu.ErrCLANotSupported, "CLA not supported by the purse"},
	{apdu.ErrINSNotSupported, "INS not supported by the purse"},
	{apdu.ErrSMNotSupported, "secure messaging CLA (b4b3 ≠ 00): the purse has no secure channel of its own"},
	{apdu.ErrChainingUnsupported, "command chaining (CLA b5) is not supported"},
	{apdu.ErrMemoryFailure, "persistent memory failure; nothing is guaranteed about the command"},
	{apdu.ErrUnknown, "internal error; the runtime rolled back the command's writes"},
}

var notPersonalised = Status{apdu.ErrConditionsNotMet, "purse not personalised yet"}

// commandStatuses are the per-command tables of docs/purse.md §7.2.
var commandStatuses = map[byte][]Status{
	INSSelect: {
		{apdu.SWNoError, "selected; FCI returned"},
		{SWBlockedSelected, "selected, purse BLOCKED: value commands answer 6A81; FCI returned"},
		{apdu.ErrFileNotFound, "no such application (runtime)"},
		{apdu.ErrAppletSelectFailed, "selection refused (runtime)"},
	},
	INSGetPurseData: {
		{apdu.SWNoError, "purse data returned"},
		{apdu.ErrWrongLength, "command data present"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		notPersonalised,
	},
	INSInitializeLoad: {
		{apdu.SWNoError, "load session opened; S1 returned"},
		{apdu.ErrWrongLength, "Lc not 17"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		notPersonalised,
		{SWPurseBlocked, "purse BLOCKED"},
		{apdu.ErrReferenceUnusable, "key version is not the purse's K_LOAD version"},
		{apdu.ErrWrongData, "amount 0, or currency not the purse's"},
		{SWAmountLimit, "amount above the maximum load amount"},
		{SWMaxBalance, "balance + amount would exceed the maximum balance"},
		{SWATCExhausted, "ATC exhausted: the purse accepts no more value changes"},
	},
	INSCreditLoad: {
		{apdu.SWNoError, "load done; balance, ATC and TC returned"},
		{apdu.ErrWrongLength, "Lc not 13"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		{apdu.ErrConditionsNotMet, "no load session on this channel (none, ended, or reset), or the purse changed since INITIALIZE LOAD; or not personalised"},
		{apdu.ErrWrongData, "date-time not a valid BCD date and time"},
		{apdu.ErrSecurityStatus, "S2 incorrect (forged, replayed, or for other data); nothing changed"},
		{apdu.ErrNotEnoughMemory, "no room for the journal; nothing changed"},
	},
	INSInitializeDebit: {
		{apdu.SWNoError, "debit session opened"},
		{apdu.ErrWrongLength, "Lc not 0F"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		notPersonalised,
		{SWPurseBlocked, "purse BLOCKED"},
		{apdu.ErrReferenceUnusable, "key version is not the purse's K_DEBIT version"},
		{apdu.ErrWrongData, "amount 0, or currency not the purse's"},
		{SWAmountLimit, "amount above the maximum debit amount"},
		{SWInsufficientFunds, "amount above the balance"},
		{SWOfflineLimit, "debits since the last load would exceed the offline limit: load first"},
		{SWATCExhausted, "ATC exhausted: the purse accepts no more value changes"},
		{apdu.ErrSecurityStatus, "amount above the PIN-free limit and the PIN is not verified on this channel"},
		{apdu.ErrAuthBlocked, "amount above the PIN-free limit and the PIN is blocked"},
	},
	INSDebit: {
		{apdu.SWNoError, "debit done; balance, ATC, M2 and TC returned"},
		{apdu.ErrWrongLength, "Lc not 1B"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		{apdu.ErrConditionsNotMet, "no debit session on this channel (none, ended, or reset), or the purse changed since INITIALIZE DEBIT; or not personalised"},
		{apdu.ErrWrongData, "date-time not a valid BCD date and time"},
		{apdu.ErrSecurityStatus, "M1 incorrect (forged, replayed, or for other data); nothing changed"},
		{apdu.ErrNotEnoughMemory, "no room for the journal; nothing changed"},
	},
	INSGetTransactionProof: {
		{apdu.SWNoError, "the log record of that ATC (with its TC): the value change happened"},
		{apdu.ErrWrongLength, "Lc not 04"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		notPersonalised,
		{apdu.ErrRefDataNotFound, "no record of that ATC: either never used (the value change did not happen) or older than the last 16"},
	},
	INSReadRecord: {
		{apdu.SWNoError, "log record returned"},
		{apdu.ErrWrongLength, "command data present"},
		{apdu.ErrIncorrectP1P2, "P2 not C4, or P1 = 00"},
		notPersonalised,
		{apdu.ErrRecordNotFound, "no such record (P1 above the number of records held)"},
	},
	INSVerify: {
		{apdu.SWNoError, "PIN verified (or, without data: already verified on this channel)"},
		{apdu.ErrVerifyFailed, "63Cx: wrong PIN (or, without data: not verified), x tries left"},
		{apdu.ErrAuthBlocked, "PIN blocked (no tries left)"},
		{apdu.ErrWrongData, "malformed PIN block (no try counted)"},
		{apdu.ErrWrongLength, "Lc neither absent nor 08"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0080"},
		notPersonalised,
	},
	INSGetChallenge: {
		{apdu.SWNoError, "8-byte challenge returned, valid for the next command only"},
		{apdu.ErrWrongLength, "Le not 08, or command data present"},
		{apdu.ErrIncorrectP1P2, "P1-P2 not 0000"},
		notPersonalised,
	},
	INSSetStatus: {
		{apdu.SWNoError, "life cycle or PIN try counter changed"},
		{apdu.ErrWrongLength, "Lc not 08"},
		{apdu.ErrIncorrectP1P2, "P1 not 01, 02 or 03"},
		{apdu.ErrReferenceUnusable, "P2 is not the purse's K_LOAD version"},
		{apdu.ErrConditionsNotMet, "no GET CHALLENGE just before, transition not allowed (block a purse not ACTIVE, unblock one not BLOCKED), or not personalised"},
		{apdu.ErrSecurityStatus, "MAC incorrect; nothing changed"},
	},
}

// Statuses returns the status words a purse command (by INS) can answer,
// the general ones of docs/purse.md §7.1 last.
func Statuses(ins byte) []Status {
	out := append([]Status(nil), commandStatuses[ins]...)
	return append(out, generalStatuses...)
}

// Describe explains sw as an answer to the command with this INS, e.g.
// Describe(INSDebit, 0x6982) is "6982: M1 incorrect (...)".
func Describe(ins byte, sw apdu.SW) string {
	for _, s := range Statuses(ins) {
		if s.SW == sw || (s.SW == apdu.ErrVerifyFailed && sw.Family() == apdu.ErrVerifyFailed) {
			return fmt.Sprintf("%04X: %s", uint16(sw), s.Meaning)
		}
	}
	return sw.String()
}
