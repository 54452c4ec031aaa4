package purse

import "fmt"

// LogRecordLen is the size of a transaction log record (docs/purse.md §6).
const LogRecordLen = 58

// LogRecord is one record of the purse's cyclic transaction log, returned
// by READ RECORD and GET TRANSACTION PROOF (docs/purse.md §6):
//
//	off len field
//	  0   4 ATC
//	  4   1 type: 02 load, 06 debit
//	  5   4 amount
//	  9   4 balance after
//	 13   2 currency
//	 15   7 date-time
//	 22   8 terminal ID
//	 30   4 reference: authorisation reference (load), TSM sequence (debit)
//	 34   8 host MAC: S2 (load), M1 (debit)
//	 42   8 card MAC: S1 (load), M2 (debit)
//	 50   8 TC
type LogRecord struct {
	ATC          uint32
	Type         byte
	Amount       uint32
	BalanceAfter uint32
	Currency     Currency
	DateTime     DateTime
	TerminalID   TerminalID
	Reference    uint32
	HostMAC      MAC
	CardMAC      MAC
	TC           MAC
}

// Bytes encodes the record.
func (r LogRecord) Bytes() []byte { return r.Append(make([]byte, 0, LogRecordLen)) }

// Append appends the encoded record to dst.
func (r LogRecord) Append(dst []byte) []byte {
	dst = be32(dst, r.ATC)
	dst = append(dst, r.Type)
	dst = be32(dst, r.Amount)
	dst = be32(dst, r.BalanceAfter)
	dst = append(dst, r.Currency[:]...)
	dst = append(dst, r.DateTime[:]...)
	dst = append(dst, r.TerminalID[:]...)
	dst = be32(dst, r.Reference)
	dst = append(dst, r.HostMAC[:]...)
	dst = append(dst, r.CardMAC[:]...)
	return append(dst, r.TC[:]...)
}

// ParseLogRecord decodes a record. It checks the length and the type;
// a record with ATC 0 (an unused slot) is refused too.
func ParseLogRecord(b []byte) (LogRecord, error) {
	var r LogRecord
	if err := fixed("log record", b, LogRecordLen); err != nil {
		return r, err
	}
	rd := reader{b}
	r.ATC = rd.u32()
	r.Type = rd.u8()
	r.Amount = rd.u32()
	r.BalanceAfter = rd.u32()
	rd.fill(r.Currency[:])
	rd.fill(r.DateTime[:])
	rd.fill(r.TerminalID[:])
	r.Reference = rd.u32()
	rd.fill(r.HostMAC[:])
	rd.fill(r.CardMAC[:])
	rd.fill(r.TC[:])
	if r.ATC == 0 {
		return LogRecord{}, fmt.Errorf("%w: log record with ATC 0", ErrMalformed)
	}
	if r.Type != TypeLoad && r.Type != TypeDebit {
		return LogRecord{}, fmt.Errorf("%w: log record type %02X", ErrMalformed, r.Type)
	}
	return r, nil
}

// BalanceBefore reconstructs the balance before the transaction, or false
// when the record is inconsistent (a debit leaving more than 2^32−1, a
// load larger than the balance after it).
func (r LogRecord) BalanceBefore() (uint32, bool) {
	switch r.Type {
	case TypeLoad:
		return r.BalanceAfter - r.Amount, r.Amount <= r.BalanceAfter
	case TypeDebit:
		s := uint64(r.BalanceAfter) + uint64(r.Amount)
		return uint32(s), s <= 0xFFFFFFFF
	}
	return 0, false
}

// String renders the record for logs and traces (it holds no secrets).
func (r LogRecord) String() string {
	kind := "load"
	if r.Type == TypeDebit {
		kind = "debit"
	}
	return fmt.Sprintf("ATC %d %s %d (%s) → %d at %s terminal %X ref %d TC %X",
		r.ATC, kind, r.Amount, r.Currency, r.BalanceAfter, r.DateTime, r.TerminalID[:], r.Reference, r.TC[:])
}
