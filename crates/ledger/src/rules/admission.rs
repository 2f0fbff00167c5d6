//! Rule 5: may a spawn start? Project and user together must be able to pay
//! the first period, counting what pending spawns were already promised.

use crate::clock::Millis;

/// The figures of a refused spawn, for a message the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    /// Credits the first period needs.
    pub required: i64,
    /// Credits of user and project not yet promised to pending spawns.
    pub available: i64,
    /// Credits promised to other pending spawns drawing on these pools.
    pub promised: i64,
}

/// The pools a spawn would draw on, with grants applied to now.
#[derive(Debug, Clone, Copy)]
pub struct Means {
    /// The user pool's balance.
    pub user_balance: i64,
    /// The project pool's balance, if the pool has a project.
    pub project_balance: Option<i64>,
    /// Credits promised to pending spawns on the user pool or the project.
    pub promised: i64,
}

/// Admits a spawn costing `required` per period, or says by how much it falls
/// short. A free spawn is always admitted.
pub fn check(required: i64, means: Means) -> Result<(), Shortage> {
    let total = means
        .user_balance
        .saturating_add(means.project_balance.unwrap_or(0));
    let available = total.saturating_sub(means.promised).max(0);
    if required <= 0 || available >= required {
        Ok(())
    } else {
        Err(Shortage {
            required,
            available,
            promised: means.promised,
        })
    }
}

/// The earliest of two optional times.
pub fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_count_against_what_there_is() {
        let means = Means {
            user_balance: 30,
            project_balance: Some(10),
            promised: 25,
        };
        assert_eq!(check(15, means), Ok(()));
        assert_eq!(
            check(16, means),
            Err(Shortage {
                required: 16,
                available: 15,
                promised: 25
            })
        );
        assert_eq!(
            check(
                0,
                Means {
                    user_balance: 0,
                    project_balance: None,
                    promised: 9
                }
            ),
            Ok(())
        );
    }
}
