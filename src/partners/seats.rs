//! Full licence seats: counted across every user holding Full (paired
//! ghosts excepted: they hold no seat of their own), refused past the
//! configured number, and shown as `guise_licence_seats` (see
//! [`super::PartnerGauges`]).

use super::PartnerError;
use crate::users::{Licence, User};

/// Seats of a licence with a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    pub used: u64,
    pub total: u64,
}

impl Seats {
    pub fn free(&self) -> u64 {
        self.total.saturating_sub(self.used)
    }

    /// Whether one more holder fits; the refusal says how many are used.
    pub fn admit_one(&self) -> Result<(), PartnerError> {
        if self.used >= self.total {
            return Err(PartnerError::SeatsFull {
                used: self.used,
                total: self.total,
            });
        }
        Ok(())
    }
}

/// Whether `user` holds a Full seat.
pub fn holds_full_seat(user: &User) -> bool {
    user.licence == Licence::Full && user.paired.is_none()
}

/// The Full seats among `users` when `total` limits them.
pub fn seats<'a>(users: impl IntoIterator<Item = &'a User>, total: Option<u64>) -> Option<Seats> {
    let total = total?;
    let used = users.into_iter().filter(|u| holds_full_seat(u)).count() as u64;
    Some(Seats { used, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, licence: Licence) -> User {
        let mut u = User::new(id, id, format!("{id}@example.com"));
        u.licence = licence;
        u
    }

    #[test]
    fn full_holders_count_and_the_refusal_says_how_many_are_used() {
        let mut ghost = user("g", Licence::Full);
        ghost.paired = Some(crate::users::Paired {
            partner_user: "a".into(),
            tenant: "t".into(),
            roles: Vec::new(),
        });
        let users = [
            user("a", Licence::Full),
            user("b", Licence::Full),
            user("v", Licence::Viewer),
            ghost,
        ];
        assert_eq!(seats(&users, None), None);
        let s = seats(&users, Some(3)).unwrap();
        assert_eq!((s.used, s.free()), (2, 1));
        assert!(s.admit_one().is_ok());
        let full = seats(&users, Some(2)).unwrap();
        let e = full.admit_one().unwrap_err();
        assert_eq!(
            e.to_string(),
            "all 2 Full licences are in use (2 of 2); free one before assigning another"
        );
    }
}
