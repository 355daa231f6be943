//! What a scan can skip: bounds on `partition`, `offset` and `timestamp`
//! read from the query's predicates. Conservative: a predicate not
//! understood here narrows nothing (DataFusion still applies every filter),
//! so a bound is only ever looser than the truth, never tighter.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use karnak_storage::columnar::{COL_OFFSET, COL_PARTITION, COL_TIMESTAMP};

#[derive(Debug, Clone)]
pub struct Ranges {
    partitions: Option<Vec<i32>>,
    partition_lo: i64,
    partition_hi: i64,
    offset_lo: i64,
    /// Exclusive.
    offset_hi: i64,
    ts_lo: Option<i64>,
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            partitions: None,
            partition_lo: i64::MIN,
            partition_hi: i64::MAX,
            offset_lo: 0,
            offset_hi: i64::MAX,
            ts_lo: None,
        }
    }
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(Column { name, .. }) => Some(name.as_str()),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

/// An integer or timestamp literal, timestamps in milliseconds.
fn literal(e: &Expr) -> Option<i64> {
    let v = match e {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return literal(&c.expr),
        _ => return None,
    };
    match v {
        ScalarValue::Int8(Some(x)) => Some(*x as i64),
        ScalarValue::Int16(Some(x)) => Some(*x as i64),
        ScalarValue::Int32(Some(x)) => Some(*x as i64),
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::UInt8(Some(x)) => Some(*x as i64),
        ScalarValue::UInt16(Some(x)) => Some(*x as i64),
        ScalarValue::UInt32(Some(x)) => Some(*x as i64),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampMicrosecond(Some(x), _) => Some(x.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x.div_euclid(1_000_000)),
        _ => None,
    }
}

fn flip(op: Operator) -> Option<Operator> {
    Some(match op {
        Operator::Eq => Operator::Eq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        _ => return None,
    })
}

/// `column op value`, whichever side the column is on.
fn comparison(e: &Expr) -> Option<(&str, Operator, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    if let (Some(c), Some(v)) = (column(left), literal(right)) {
        return flip(*op).map(|_| (c, *op, v));
    }
    if let (Some(v), Some(c)) = (literal(left), column(right)) {
        return flip(*op).map(|f| (c, f, v));
    }
    None
}

fn bounded(name: &str) -> bool {
    name == COL_PARTITION || name == COL_OFFSET || name == COL_TIMESTAMP
}

/// Whether the scan can use this predicate to read less.
pub fn is_pushable(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::And,
            left,
            right,
        }) => is_pushable(left) || is_pushable(right),
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            column(expr).is_some_and(bounded) && literal(low).is_some() && literal(high).is_some()
        }
        Expr::InList(l) => {
            !l.negated
                && column(&l.expr) == Some(COL_PARTITION)
                && l.list.iter().all(|v| literal(v).is_some())
        }
        _ => comparison(e).is_some_and(|(c, _, _)| bounded(c)),
    }
}

impl Ranges {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut r = Ranges::default();
        for f in filters {
            r.add(f);
        }
        r
    }

    fn add(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                op: Operator::And,
                left,
                right,
            }) => {
                self.add(left);
                self.add(right);
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Some(c), Some(lo), Some(hi)) = (column(expr), literal(low), literal(high)) {
                    self.bound(c, Operator::GtEq, lo);
                    self.bound(c, Operator::LtEq, hi);
                }
            }
            Expr::InList(l) if !l.negated && column(&l.expr) == Some(COL_PARTITION) => {
                let vals: Option<Vec<i64>> = l.list.iter().map(literal).collect();
                if let Some(vals) = vals {
                    let set: Vec<i32> = vals
                        .into_iter()
                        .filter_map(|v| i32::try_from(v).ok())
                        .collect();
                    self.restrict_partitions(set);
                }
            }
            _ => {
                if let Some((c, op, v)) = comparison(e) {
                    self.bound(c, op, v);
                }
            }
        }
    }

    fn restrict_partitions(&mut self, set: Vec<i32>) {
        self.partitions = Some(match self.partitions.take() {
            None => set,
            Some(old) => old.into_iter().filter(|p| set.contains(p)).collect(),
        });
    }

    fn bound(&mut self, col: &str, op: Operator, v: i64) {
        let (lo, hi) = match op {
            Operator::Eq => (v, v.saturating_add(1)),
            Operator::Gt => (v.saturating_add(1), i64::MAX),
            Operator::GtEq => (v, i64::MAX),
            Operator::Lt => (i64::MIN, v),
            Operator::LtEq => (i64::MIN, v.saturating_add(1)),
            _ => return,
        };
        match col {
            c if c == COL_PARTITION => {
                self.partition_lo = self.partition_lo.max(lo);
                self.partition_hi = self.partition_hi.min(hi);
            }
            c if c == COL_OFFSET => {
                self.offset_lo = self.offset_lo.max(lo);
                self.offset_hi = self.offset_hi.min(hi);
            }
            // Only a lower bound: with CreateTime, timestamps need not grow
            // with offsets, so an upper bound cannot end a scan early.
            c if c == COL_TIMESTAMP && lo != i64::MIN => {
                self.ts_lo = Some(self.ts_lo.map_or(lo, |t| t.max(lo)));
            }
            _ => {}
        }
    }

    pub fn partition_matches(&self, p: i32) -> bool {
        let p64 = p as i64;
        p64 >= self.partition_lo
            && p64 < self.partition_hi
            && self.partitions.as_ref().is_none_or(|s| s.contains(&p))
    }

    pub fn offset_start(&self) -> i64 {
        self.offset_lo.max(0)
    }

    pub fn offset_end(&self) -> i64 {
        self.offset_hi
    }

    pub fn timestamp_start(&self) -> Option<i64> {
        self.ts_lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn bounds_from_predicates() {
        let r = Ranges::from_filters(&[
            col("partition").eq(lit(2i32)),
            col("offset").gt_eq(lit(10i64)),
            lit(20i64).gt(col("offset")),
        ]);
        assert!(r.partition_matches(2) && !r.partition_matches(1));
        assert_eq!((r.offset_start(), r.offset_end()), (10, 20));
        let r = Ranges::from_filters(&[col("partition").in_list(vec![lit(1), lit(3)], false)]);
        assert!(r.partition_matches(3) && !r.partition_matches(2));
        let r = Ranges::from_filters(&[col("value").eq(lit("x"))]);
        assert!(r.partition_matches(7));
        assert_eq!((r.offset_start(), r.offset_end()), (0, i64::MAX));
        assert!(!is_pushable(&col("value").eq(lit("x"))));
        assert!(is_pushable(&col("offset").lt(lit(5i64))));
    }
}
