//! BEP 52 hash request / hashes / hash reject payloads and merkle proofs:
//! no panics; decoded messages re-encode to their exact input; a `hashes`
//! message's proof can be climbed without panicking.
#![no_main]

use bt_proto::merkle;
use bt_proto::wire_v2::HashMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&id, payload)) = data.split_first() else {
        return;
    };
    let id = 21 + id % 3;
    if let Ok(m) = HashMessage::decode(id, payload) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(&out[5..], payload);
        assert_eq!(out[4], id);
        assert_eq!(
            u32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
            out.len() - 4
        );
        if let HashMessage::Hashes {
            request,
            hashes,
            uncles,
        } = &m
        {
            assert_eq!(hashes.len(), request.length as usize);
            assert_eq!(uncles.len(), request.uncle_count() as usize);
            let _ = merkle::climb(request.base_layer, request.index, hashes, uncles);
            let _ = merkle::verify_proof(
                &request.pieces_root,
                u64::from(request.index) * 16384,
                request.base_layer,
                request.index,
                hashes,
                uncles,
            );
        }
    }
});
