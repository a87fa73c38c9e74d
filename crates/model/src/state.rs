use serde::{Deserialize, Serialize};

/// Where a message is in the queue. Persisted on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Received,
    Held,
    Released,
    Delivering,
    Delivered,
    Deferred,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Received,
        State::Held,
        State::Released,
        State::Delivering,
        State::Delivered,
        State::Deferred,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => "received",
            State::Held => "held",
            State::Released => "released",
            State::Delivering => "delivering",
            State::Delivered => "delivered",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to a message in a final state.
    pub fn is_final(self) -> bool {
        matches!(self, State::Delivered | State::Failed | State::Cancelled)
    }
}

/// Delivery status of one envelope recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    Pending,
    Delivered,
    Deferred,
    Failed,
}

impl RcptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RcptStatus::Pending => "pending",
            RcptStatus::Delivered => "delivered",
            RcptStatus::Deferred => "deferred",
            RcptStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RcptStatus> {
        [Self::Pending, Self::Delivered, Self::Deferred, Self::Failed].into_iter().find(|st| st.as_str() == s)
    }
}
