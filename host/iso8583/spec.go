package iso8583

import (
	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
)

// Data element numbers of the profile (ISO 8583:1987 numbering,
// protocols.md §5.2, docs/iso8583.md §3).
const (
	DEMTI             = 0
	DEBitmap          = 1
	DEPAN             = 2
	DEProcessingCode  = 3
	DEAmount          = 4
	DETransmission    = 7
	DESTAN            = 11
	DEPOSEntryMode    = 22
	DERRN             = 37
	DEAuthID          = 38
	DEResponseCode    = 39
	DETerminalID      = 41
	DEMerchantID      = 42
	DEKeyData         = 48
	DECurrency        = 49
	DEAdditionalAmts  = 54
	DEICC             = 55
	DETxnNumber       = 62
	DEMAC             = 64
	DESettlementCode  = 66
	DENetworkCode     = 70
	DECreditsCount    = 74
	DECreditRevCount  = 75
	DEDebitsCount     = 76
	DEDebitRevCount   = 77
	DECreditsAmount   = 86
	DECreditRevAmount = 87
	DEDebitsAmount    = 88
	DEDebitRevAmount  = 89
	DEOriginalData    = 90
	DENetSettlement   = 97
	DEMAC2            = 128
)

// MACLen is the length of DE 64 and DE 128 (ISO 8583:1987 b 64).
const MACLen = 8

// TxnNumberLen is the length of DE 62: seed ID 4 ‖ transaction number 8.
const TxnNumberLen = 12

// numericFields are the ASCII numeric (n) fields; Unpack checks they hold
// digits only, which moov's String fields do not.
var numericFields = []int{DEPAN, DEProcessingCode, DETransmission, DESTAN,
	DEPOSEntryMode, DECurrency, DESettlementCode, DENetworkCode,
	DECreditsCount, DECreditRevCount, DEDebitsCount, DEDebitRevCount,
	DECreditsAmount, DECreditRevAmount, DEDebitsAmount, DEDebitRevAmount,
	DEOriginalData}

func str(n int, desc string, pref prefix.Prefixer) *field.String {
	return field.NewString(&field.Spec{Length: n, Description: desc, Enc: encoding.ASCII, Pref: pref})
}

func num(n int, desc string) *field.Numeric {
	return field.NewNumeric(&field.Spec{Length: n, Description: desc, Enc: encoding.ASCII,
		Pref: prefix.ASCII.Fixed, Pad: padding.Left('0')})
}

func bin(n int, desc string, pref prefix.Prefixer) *field.Binary {
	return field.NewBinary(&field.Spec{Length: n, Description: desc, Enc: encoding.Binary, Pref: pref})
}

var spec = &iso8583.MessageSpec{
	Name: "valuechip ISO 8583:1987 profile v1",
	Fields: map[int]field.Field{
		DEMTI: str(4, "Message Type Indicator", prefix.ASCII.Fixed),
		// 8-byte binary bitmaps: bit 1 of the primary bitmap announces the
		// secondary one (protocols.md §5.8 pitfall: not Length 16).
		DEBitmap: field.NewBitmap(&field.Spec{Length: 8, Description: "Bitmap",
			Enc: encoding.Binary, Pref: prefix.Binary.Fixed}),
		DEPAN:             str(19, "Primary Account Number", prefix.ASCII.LL),
		DEProcessingCode:  str(6, "Processing Code", prefix.ASCII.Fixed),
		DEAmount:          num(12, "Amount, Transaction"),
		DETransmission:    str(10, "Transmission Date & Time", prefix.ASCII.Fixed),
		DESTAN:            str(6, "Systems Trace Audit Number", prefix.ASCII.Fixed),
		DEPOSEntryMode:    str(3, "POS Entry Mode", prefix.ASCII.Fixed),
		DERRN:             str(12, "Retrieval Reference Number", prefix.ASCII.Fixed),
		DEAuthID:          str(6, "Authorization Identification Response", prefix.ASCII.Fixed),
		DEResponseCode:    str(2, "Response Code", prefix.ASCII.Fixed),
		DETerminalID:      str(8, "Card Acceptor Terminal Identification", prefix.ASCII.Fixed),
		DEMerchantID:      str(15, "Card Acceptor Identification Code", prefix.ASCII.Fixed),
		DEKeyData:         bin(999, "Additional Data - Private (sign-on key block)", prefix.ASCII.LLL),
		DECurrency:        str(3, "Currency Code, Transaction", prefix.ASCII.Fixed),
		DEAdditionalAmts:  str(120, "Additional Amounts", prefix.ASCII.LLL),
		DEICC:             bin(999, "ICC Data (purse BER-TLV)", prefix.ASCII.LLL),
		DETxnNumber:       bin(TxnNumberLen, "Reserved Private (transaction number)", prefix.Binary.Fixed),
		DEMAC:             bin(MACLen, "Message Authentication Code", prefix.Binary.Fixed),
		DESettlementCode:  str(1, "Settlement Code", prefix.ASCII.Fixed),
		DENetworkCode:     str(3, "Network Management Information Code", prefix.ASCII.Fixed),
		DECreditsCount:    str(10, "Credits, Number", prefix.ASCII.Fixed),
		DECreditRevCount:  str(10, "Credits Reversal, Number", prefix.ASCII.Fixed),
		DEDebitsCount:     str(10, "Debits, Number", prefix.ASCII.Fixed),
		DEDebitRevCount:   str(10, "Debits Reversal, Number", prefix.ASCII.Fixed),
		DECreditsAmount:   str(16, "Credits, Amount", prefix.ASCII.Fixed),
		DECreditRevAmount: str(16, "Credits Reversal, Amount", prefix.ASCII.Fixed),
		DEDebitsAmount:    str(16, "Debits, Amount", prefix.ASCII.Fixed),
		DEDebitRevAmount:  str(16, "Debits Reversal, Amount", prefix.ASCII.Fixed),
		DEOriginalData:    str(42, "Original Data Elements", prefix.ASCII.Fixed),
		DENetSettlement:   str(17, "Amount, Net Settlement", prefix.ASCII.Fixed),
		DEMAC2:            bin(MACLen, "Message Authentication Code (secondary)", prefix.Binary.Fixed),
	},
}

// Spec returns the profile's message specification (docs/iso8583.md §3).
// The returned value is shared and must not be modified.
func Spec() *iso8583.MessageSpec { return spec }

// NewMessage returns an empty message of the profile.
func NewMessage() *iso8583.Message { return iso8583.NewMessage(spec) }

// Message type indicators (docs/iso8583.md §2, protocols.md §5.1).
const (
	MTIAuthRequest       = "0100"
	MTIAuthResponse      = "0110"
	MTIFinancialRequest  = "0200"
	MTIFinancialResponse = "0210"
	MTIFinancialAdvice   = "0220"
	MTIFinancialAdviceRe = "0221"
	MTIFinancialAdvResp  = "0230"
	MTIReversalRequest   = "0400"
	MTIReversalResponse  = "0410"
	MTIReversalAdvice    = "0420"
	MTIReversalAdviceRe  = "0421"
	MTIReversalAdvResp   = "0430"
	MTIReconRequest      = "0500"
	MTIReconResponse     = "0510"
	MTINetworkRequest    = "0800"
	MTINetworkResponse   = "0810"
)

// Processing codes, DE 3 (protocols.md §5.3).
const (
	PCPurchase = "000000" // offline purse debit advice
	PCLoad     = "220000" // online load and its completion advice
	PCBalance  = "300000" // balance inquiry
)

// Network management information codes, DE 70.
const (
	NMISignOn  = "001"
	NMISignOff = "002"
	NMIEcho    = "301"
)

// Response codes, DE 39 (docs/iso8583.md §9, protocols.md §5.5).
const (
	RCApproved           = "00"
	RCDoNotHonour        = "05"
	RCInvalidTransaction = "12"
	RCInvalidAmount      = "13"
	RCInvalidCard        = "14"
	RCFormatError        = "30"
	RCInsufficientFunds  = "51"
	RCExpiredCard        = "54"
	RCNotPermittedCard   = "57"
	RCNotPermittedTerm   = "58"
	RCExceedsLimit       = "61"
	RCRestrictedCard     = "62"
	RCSecurityViolation  = "63"
	RCIssuerUnavailable  = "91"
	RCDuplicate          = "94"
	RCSystemMalfunction  = "96"
)

// Settlement codes, DE 66 of 0510.
const (
	SettlementInBalance    = "1"
	SettlementOutOfBalance = "2"
)
