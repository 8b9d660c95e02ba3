//! Blocking work (files, hashing, model loads) off the async runtime: the one helper every
//! role uses, so a panicked task always surfaces as an error naming what it was doing.

use crate::error::Error;

/// Runs `f` on tokio's blocking pool. A task that panics or is cancelled becomes
/// [`Error::Task`] (converted into the caller's error type) naming `what`.
pub async fn blocking<T, E>(
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(Error::Task {
            what: what.to_string(),
            reason: e.to_string(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_pass_through_and_panics_name_the_work() {
        let ok: Result<u32, Error> = blocking("adding", || Ok(2 + 2)).await;
        assert_eq!(ok.unwrap(), 4);
        let err = blocking::<u32, Error>("exploding", || panic!("boom"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exploding"), "{err}");
    }
}
