// Package cardmanager is the emulated chip's Issuer Security Domain (ISD),
// the GlobalPlatform "card manager": an applet.Applet that authenticates the
// card issuer over Secure Channel Protocol '03' and performs card content
// management for it — loading, installing, personalising, locking and
// deleting applications, managing its own keys and the card life cycle.
//
// References, cited throughout as:
//
//   - "GPCS §x": GlobalPlatform Card Specification v2.3.1 (March 2018):
//     §5.1 card life cycle, §9 card content management, §11 APDU commands
//     (Table 11-1 commands per life cycle state, Table 11-2 minimum
//     security levels), Annex H card recognition data.
//   - "Amd D §x": GlobalPlatform Card Specification v2.2 Amendment D,
//     Secure Channel Protocol '03', v1.1.1 (implemented by apdu/scp03).
//
// # Commands
//
// The ISD answers, on whatever logical channel it is selected on:
//
//	80 50  INITIALIZE UPDATE       Amd D §7.1.1     (no authentication)
//	84 82  EXTERNAL AUTHENTICATE   Amd D §7.1.2
//	80 CA  GET DATA                GPCS §11.3       (no authentication)
//	00 CB  GET DATA 2F00           GPCS §11.3.3.1.3
//	80 F2  GET STATUS              GPCS §11.4       (authenticated)
//	80 E6  INSTALL                 GPCS §11.5       (C-MAC)
//	80 E8  LOAD                    GPCS §11.6       (C-MAC)
//	80 E4  DELETE                  GPCS §11.2       (C-MAC)
//	80 D8  PUT KEY                 GPCS §11.8, Amd D §7.2 (C-MAC)
//	80 F0  SET STATUS              GPCS §11.10      (C-MAC)
//	80 E2  STORE DATA              GPCS §11.11      (C-MAC)
//
// docs/cardmanager.md lists the options, status words, life cycle rules and
// the deliberate deviations from GPCS.
//
// # State
//
// Persistent (Env.Memory): the ISD configuration (CPLC, IIN, CIN, KDD, "i",
// DAP policy) under "cfg" and one record per SCP03 key set under "key/KK"
// (keys and the sequence counter). Volatile (Env.Transient, per logical
// channel, lost on deselection and reset): the secure channel session, a
// load in progress, the personalisation target, a GP command chain and the
// GET STATUS continuation. The ISD object itself holds nothing, so one
// instance serves every channel.
package cardmanager
