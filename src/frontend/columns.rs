//! Result columns a client was shown for its statements, and the checks that a server connection preparing one again returns the same.

use super::plan::{Event, Release};
use super::session::Session;
use super::statements::ClientStatement;
use crate::protocol::build;
use crate::protocol::tags::frontend;

impl Session {
    /// After a server message: keeps the columns a Describe showed the client, compares a
    /// check's answer with them, and sends a held request's Sync once its checks are answered.
    /// `shape`: the message's columns (plan::columns_shape), when it answers a Describe.
    pub(super) fn on_columns(&mut self, ev: &mut Event, shape: Option<u64>) {
        if let Some((name, key)) = &ev.described_columns {
            self.update_statement(name, *key, |s| {
                (s.columns != shape).then(|| ClientStatement {
                    columns: shape,
                    ..s.clone()
                })
            });
        }
        let mut release = ev.release.take();
        if let Some(check) = ev.check.take() {
            let mismatched = (shape != Some(check.columns)).then_some(check.key);
            if mismatched.is_some() {
                self.columns_changed(&check);
            }
            release = self.plan.checked(mismatched).or(release);
        }
        match release {
            Some(Release::Sync) => build::sync(&mut self.swbuf),
            Some(Release::FailThenSync { close }) => {
                for key in close {
                    build::target(
                        &mut self.swbuf,
                        frontend::CLOSE,
                        crate::protocol::messages::TARGET_STATEMENT,
                        &crate::backend::prepared::server_name(key),
                    );
                }
                // No such portal: the server fails it and rolls the implicit transaction
                // back at the Sync, whatever ran after the check (its replies swallowed).
                build::execute(&mut self.swbuf, b"pgsplit_result_columns_changed", 1);
                build::sync(&mut self.swbuf);
            }
            None => {}
        }
    }

    /// The server told the client the parameter types of its statement: a server connection
    /// that must prepare the statement again gets them spelled out, so it does not infer
    /// others from a schema changed since (the client encodes binary parameters by them).
    pub(super) fn keep_described_types(&mut self, name: &[u8], key: u64, types: bytes::Bytes) {
        self.update_statement(name, key, |s| {
            (s.param_types != types).then(|| ClientStatement {
                param_types: types,
                ..s.clone()
            })
        });
    }

    /// A statement prepared again returns other columns than its client was shown: the client's
    /// statement fails from now on, and the server's is closed, so that no other client whose
    /// statement of the same text and epoch was described before the change binds it unchecked.
    fn columns_changed(&mut self, check: &super::plan::Check) {
        self.update_statement(&check.name, check.key, |s| {
            Some(ClientStatement {
                columns_changed: true,
                ..s.clone()
            })
        });
        if let Some(lease) = self.server.as_mut() {
            lease.conn().prepared.remove(check.key);
        }
    }

    /// Replaces the client's statement `name` by what `f` makes of it, if it is still the one
    /// of `key` (the client may have closed or replaced it since the message was sent).
    fn update_statement(
        &mut self,
        name: &[u8],
        key: u64,
        f: impl FnOnce(&ClientStatement) -> Option<ClientStatement>,
    ) {
        let slot = if name.is_empty() {
            self.unnamed.as_mut()
        } else {
            self.statements.get_mut(name)
        };
        let Some(stmt) = slot.filter(|s| s.key == key) else {
            return;
        };
        if let Some(new) = f(stmt) {
            *stmt = std::sync::Arc::new(new);
        }
    }
}
