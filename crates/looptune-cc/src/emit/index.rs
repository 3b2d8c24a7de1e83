//! Index arithmetic as linear forms: `constant + sum(coefficient * atom)`.
//!
//! Index expressions are evaluated while printing, with unrolled loop counters (and the lanes
//! of vector groups) bound to constants, so that a register tile's indices come out as plain
//! numbers and an access prints as `A[i_outer * 6144 + k + 3072]` rather than the nest's
//! `(i.outer * 6 + 3) * 1024 + k`. An atom is a run-time loop counter or an expression that is
//! not affine (a floor division, a product of two counters); each carries the range of values
//! it can take, which is what lets floor division of a non-negative value print as C's `/` and
//! guards that always hold vanish.

/// One `coefficient * atom` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Term {
    /// The atom as C code (an identifier or a parenthesised expression).
    pub code: String,
    /// Its coefficient, never zero in a normalised form.
    pub coefficient: i64,
    /// When the innermost loop the atom depends on was entered: terms print outermost first.
    pub order: u32,
    /// The values the atom can take, when known.
    pub range: Option<(i64, i64)>,
}

/// A linear form over atoms; `None` results of the arithmetic mean `i64` overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lin {
    /// The constant part.
    pub constant: i64,
    /// The terms, one per distinct atom.
    pub terms: Vec<Term>,
}

impl Lin {
    /// A constant.
    pub fn constant(value: i64) -> Lin {
        Lin {
            constant: value,
            terms: Vec::new(),
        }
    }

    /// One atom, plus nothing.
    pub fn atom(code: String, order: u32, range: Option<(i64, i64)>) -> Lin {
        Lin {
            constant: 0,
            terms: vec![Term {
                code,
                coefficient: 1,
                order,
                range,
            }],
        }
    }

    /// The value, if it is a constant.
    pub fn as_const(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.constant)
    }

    /// The innermost binding order of any atom (0 for a constant).
    pub fn order(&self) -> u32 {
        self.terms.iter().map(|term| term.order).max().unwrap_or(0)
    }

    /// `self + scale * other`.
    pub fn add_scaled(mut self, other: &Lin, scale: i64) -> Option<Lin> {
        self.constant = self
            .constant
            .checked_add(other.constant.checked_mul(scale)?)?;
        for term in &other.terms {
            let coefficient = term.coefficient.checked_mul(scale)?;
            match self.terms.iter_mut().find(|mine| mine.code == term.code) {
                Some(mine) => mine.coefficient = mine.coefficient.checked_add(coefficient)?,
                None => self.terms.push(Term {
                    coefficient,
                    ..term.clone()
                }),
            }
        }
        self.terms.retain(|term| term.coefficient != 0);
        Some(self)
    }

    /// `self * factor`.
    pub fn scale(&self, factor: i64) -> Option<Lin> {
        Lin::constant(0).add_scaled(self, factor)
    }

    /// The smallest and largest value, when every atom's range is known.
    pub fn range(&self) -> Option<(i64, i64)> {
        let mut low = self.constant;
        let mut high = self.constant;
        for term in &self.terms {
            let (atom_low, atom_high) = term.range?;
            let a = atom_low.checked_mul(term.coefficient)?;
            let b = atom_high.checked_mul(term.coefficient)?;
            low = low.checked_add(a.min(b))?;
            high = high.checked_add(a.max(b))?;
        }
        Some((low, high))
    }

    /// The form as a C expression of type `lt_i64`, outermost atoms first, the constant last.
    pub fn to_c(&self) -> String {
        let mut terms: Vec<&Term> = self.terms.iter().collect();
        terms.sort_by_key(|term| term.order);
        let mut text = String::new();
        for term in terms {
            let magnitude = term.coefficient.unsigned_abs();
            let product = if magnitude == 1 {
                term.code.clone()
            } else {
                format!("{} * {magnitude}", term.code)
            };
            match (text.is_empty(), term.coefficient < 0) {
                (true, false) => text.push_str(&product),
                (true, true) => text.push_str(&format!("-{product}")),
                (false, false) => text.push_str(&format!(" + {product}")),
                (false, true) => text.push_str(&format!(" - {product}")),
            }
        }
        match (text.is_empty(), self.constant) {
            (true, constant) => constant.to_string(),
            (false, 0) => text,
            (false, constant) if constant < 0 => format!("{text} - {}", constant.unsigned_abs()),
            (false, constant) => format!("{text} + {constant}"),
        }
    }

    /// [`Lin::to_c`], parenthesised unless it is a single atom or number.
    pub fn to_c_operand(&self) -> String {
        let simple = match (self.terms.as_slice(), self.constant) {
            ([], constant) => constant >= 0,
            ([term], 0) => term.coefficient == 1,
            _ => false,
        };
        if simple {
            self.to_c()
        } else {
            format!("({})", self.to_c())
        }
    }
}

/// The range of `a * b` over two ranges.
pub(crate) fn product_range(a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
    let corners = [
        a.0.checked_mul(b.0)?,
        a.0.checked_mul(b.1)?,
        a.1.checked_mul(b.0)?,
        a.1.checked_mul(b.1)?,
    ];
    Some((
        *corners.iter().min().expect("four corners"),
        *corners.iter().max().expect("four corners"),
    ))
}

/// Floor division, the IR's rounding (`None` on division by zero or overflow).
pub(crate) fn floor_div(a: i64, b: i64) -> Option<i64> {
    looptune_ir::IndexOp::FloorDiv.apply(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_print_outermost_first_with_the_constant_last() {
        let outer = Lin::atom("io".into(), 1, Some((0, 3)));
        let inner = Lin::atom("k".into(), 2, Some((0, 9)));
        let form = inner
            .add_scaled(&outer, 24)
            .and_then(|form| form.add_scaled(&Lin::constant(5), -1))
            .expect("no overflow");
        assert_eq!(form.to_c(), "io * 24 + k - 5");
        assert_eq!(form.range(), Some((-5, 76)));
        let cancelled = form
            .add_scaled(&Lin::atom("k".into(), 2, None), -1)
            .unwrap();
        assert_eq!(cancelled.to_c(), "io * 24 - 5");
        assert_eq!(Lin::constant(-3).to_c_operand(), "(-3)");
    }
}
