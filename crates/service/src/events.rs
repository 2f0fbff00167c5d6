//! Live updates for browsers: one broadcast channel per user with open
//! event streams. A user's view is computed once per change and sent to all
//! of that user's tabs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use credit_ledger::Millis;

/// Most event streams open at once; past it a new stream is refused (503)
/// rather than letting memory grow without bound.
pub const STREAMS_MAX: usize = 20_000;
/// Messages buffered per user; a tab slower than this skips to the latest.
const USER_BUFFER: usize = 8;

struct UserChannel {
    sender: broadcast::Sender<Arc<str>>,
    /// When this user's view changes next by itself (a grant, a charge).
    next_change_at: Option<Millis>,
}

/// All open event streams, by user.
#[derive(Default)]
pub struct Events {
    users: Mutex<HashMap<String, UserChannel>>,
}

impl Events {
    /// A receiver for `user`'s updates, or `None` when too many streams are open.
    pub fn subscribe(&self, user: &str) -> Option<broadcast::Receiver<Arc<str>>> {
        let mut users = self.users.lock().expect("events lock");
        if self.open_streams_locked(&users) >= STREAMS_MAX {
            return None;
        }
        let channel = users
            .entry(user.to_string())
            .or_insert_with(|| UserChannel {
                sender: broadcast::channel(USER_BUFFER).0,
                next_change_at: None,
            });
        Some(channel.sender.subscribe())
    }

    fn open_streams_locked(&self, users: &HashMap<String, UserChannel>) -> usize {
        users.values().map(|c| c.sender.receiver_count()).sum()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        let users = self.users.lock().expect("events lock");
        self.open_streams_locked(&users)
    }

    /// True when `user` has a stream open.
    pub fn is_watched(&self, user: &str) -> bool {
        let users = self.users.lock().expect("events lock");
        users
            .get(user)
            .is_some_and(|c| c.sender.receiver_count() > 0)
    }

    /// Sends `json` to every stream of `user`; remembers when the view will
    /// change next by itself.
    pub fn publish(&self, user: &str, json: Arc<str>, next_change_at: Option<Millis>) {
        let mut users = self.users.lock().expect("events lock");
        if let Some(channel) = users.get_mut(user) {
            channel.next_change_at = next_change_at;
            // No receiver left is not an error: the tab just closed.
            let _ = channel.sender.send(json);
        }
    }

    /// Users with open streams whose view changes by itself at or before
    /// `now`, or every watched user when `all`. Forgets users whose streams
    /// all closed.
    pub fn due(&self, now: Millis, all: bool) -> Vec<String> {
        let mut users = self.users.lock().expect("events lock");
        users.retain(|_, c| c.sender.receiver_count() > 0);
        users
            .iter()
            .filter(|(_, c)| all || c.next_change_at.is_some_and(|t| t <= now))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn published_views_reach_every_tab_of_the_user_only() {
        let events = Events::default();
        let mut a1 = events.subscribe("ada").unwrap();
        let mut a2 = events.subscribe("ada").unwrap();
        let mut b = events.subscribe("bob").unwrap();
        events.publish("ada", Arc::from("{\"x\":1}"), Some(10));
        assert_eq!(&*a1.recv().await.unwrap(), "{\"x\":1}");
        assert_eq!(&*a2.recv().await.unwrap(), "{\"x\":1}");
        assert!(b.try_recv().is_err());
        assert_eq!(events.due(9, false), Vec::<String>::new());
        assert_eq!(events.due(10, false), vec!["ada".to_string()]);
        drop((a1, a2));
        assert_eq!(events.due(100, true), vec!["bob".to_string()]);
        assert_eq!(events.open_streams(), 1);
    }
}
