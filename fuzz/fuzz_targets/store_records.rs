//! The store's record decoding (the embedded store keeps each record as JSON and decodes it
//! with serde, its types validating what they hold): no input panics, and a record that
//! decodes encodes back to one that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_store::{AcmeRequest, AcmeState, App, CertRecord, OcspRecord, Site, TicketKeys};

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq,
{
    let Ok(record) = serde_json::from_slice::<T>(data) else { return };
    let encoded = serde_json::to_vec(&record).expect("a decoded record encodes");
    let again: T = serde_json::from_slice(&encoded).expect("an encoded record decodes");
    assert!(again == record, "the round trip changed the record");
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, data)) = data.split_first() else { return };
    match kind % 7 {
        0 => round_trip::<Site>(data),
        1 => round_trip::<App>(data),
        2 => round_trip::<CertRecord>(data),
        3 => round_trip::<OcspRecord>(data),
        4 => round_trip::<AcmeState>(data),
        5 => round_trip::<AcmeRequest>(data),
        _ => round_trip::<TicketKeys>(data),
    }
});
