use serde::{Deserialize, Serialize};

/// Where a message is in the queue. Persisted on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Received,
    Held,
    /// Waiting for an approver's decision (until a deadline).
    AwaitingApproval,
    Released,
    Delivering,
    Delivered,
    Deferred,
    Failed,
    Cancelled,
    /// Refused by a rule or an approver; the sender was told.
    Rejected,
}

impl State {
    /// The states a message can still be cancelled from (nothing has gone
    /// out yet): the store's cancel and the cancel link's page both ask.
    pub const CANCELLABLE: [State; 5] =
        [State::Received, State::Held, State::AwaitingApproval, State::Released, State::Deferred];

    pub const ALL: [State; 10] = [
        State::Received,
        State::Held,
        State::AwaitingApproval,
        State::Released,
        State::Delivering,
        State::Delivered,
        State::Deferred,
        State::Failed,
        State::Cancelled,
        State::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => "received",
            State::Held => "held",
            State::AwaitingApproval => "awaiting_approval",
            State::Released => "released",
            State::Delivering => "delivering",
            State::Delivered => "delivered",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to a message in a final state.
    pub fn is_final(self) -> bool {
        matches!(self, State::Delivered | State::Failed | State::Cancelled | State::Rejected)
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
