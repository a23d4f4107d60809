//! Typed messages in `google.protobuf.Any`, named as Go's typeurl names
//! protobuf messages: by their full name, with no `type.googleapis.com/`
//! prefix (one is accepted on what arrives).

use crated_core::{Error, Result};
use prost_types::Any;

/// `message` in an Any named by its full protobuf name.
pub fn pack<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::full_name(),
        value: message.encode_to_vec(),
    }
}

/// The full protobuf name an Any's type URL names.
pub fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// Whether `any` holds an `M`.
pub fn is<M: prost::Name>(any: &Any) -> bool {
    type_name(any) == M::full_name()
}

/// The `M` in `any`; InvalidArgument naming both types if it holds
/// another, or naming the type if its bytes do not decode.
pub fn unpack<M: prost::Message + prost::Name + Default>(any: &Any) -> Result<M> {
    if !is::<M>(any) {
        return Err(Error::invalid_argument(format!(
            "expected a {}, got {:?}",
            M::full_name(),
            any.type_url
        )));
    }
    M::decode(any.value.as_slice())
        .map_err(|e| Error::invalid_argument(format!("decode {}: {e}", M::full_name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crated_api::containerd::types::transfer::Progress;

    #[test]
    fn names_are_go_typeurl_names_and_prefixes_are_accepted() {
        let progress = Progress {
            event: "saved".into(),
            ..Progress::default()
        };
        let mut any = pack(&progress);
        assert_eq!(any.type_url, "containerd.types.transfer.Progress");
        assert_eq!(pack(&()).type_url, "google.protobuf.Empty");
        any.type_url = format!("type.googleapis.com/{}", any.type_url);
        assert_eq!(unpack::<Progress>(&any).ok(), Some(progress));
    }

    #[test]
    fn another_type_is_refused_by_name() {
        let err = unpack::<Progress>(&pack(&())).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("expected a containerd.types.transfer.Progress, got \"google.protobuf.Empty\"")
        );
    }
}
