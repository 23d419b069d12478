//! Fuzzes render → parse → encode (QMP, RFB and PC-XT) on arbitrary input: none of it may panic.
#![no_main]

use std::collections::BTreeMap;

use boot_commands::{
    encode, parse, pcxt_batches, pcxt_scancodes, qmp_events, render, rfb_key_event, PCXT_BATCH, US,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let values: BTreeMap<String, String> = [("HTTPIP", "10.0.2.2"), ("HTTPPort", "8080")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = render(s, &values).unwrap_or_else(|_| s.to_string());
    let Ok(parsed) = parse(&s) else {
        return;
    };
    if let Ok(groups) = encode(&parsed.actions, &US) {
        for strokes in &groups {
            let _ = serde_json::to_vec(&qmp_events(strokes));
            for k in strokes {
                let _ = rfb_key_event(k);
            }
        }
        for batch in pcxt_batches(&groups, PCXT_BATCH) {
            let _ = pcxt_scancodes(&batch);
        }
    }
});
