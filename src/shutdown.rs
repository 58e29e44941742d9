//! SIGINT (Ctrl-C) and SIGTERM (what orchestrators send), listened for from the moment the
//! process starts: a signal that arrives while a service is still starting stops it cleanly
//! once it runs (stages finish their batches, commit and leave their groups), instead of
//! killing it mid-start, and a signal is never lost between two waits.

use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

static REQUESTED: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Start listening. Call once, inside the runtime, before starting anything.
pub fn listen() -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = tx.send(true);
    });
    let _ = REQUESTED.set(rx);
    Ok(())
}

/// Until a stop was asked for (at once if it already was).
pub async fn requested() {
    let Some(rx) = REQUESTED.get() else {
        // Not listening: only Ctrl-C can stop it.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let mut rx = rx.clone();
    let _ = rx.wait_for(|asked| *asked).await;
}
