//! Register tiles: temporaries kept in local variables instead of memory.
//!
//! A temporary qualifies when every access in its scope has constant indices once unrolled
//! loops are unrolled and vector groups split into lanes (the accumulator block of a BLIS-style
//! micro-kernel: rows unrolled, columns vectorized). Which variables it becomes depends on how
//! the code touches it: the dry run of its scope records every access as a span of elements
//! (one element for a scalar access, `width` contiguous elements for a vector one). A span that
//! no other wide span overlaps becomes one vector variable; every other element touched gets a
//! scalar variable, and a vector access over such elements is assembled lane by lane. The
//! compiler then sees only local variables, which it keeps in registers across the loops.

use super::index::Lin;
use super::prelude::vector_type;

/// Temporaries with more elements stay in memory: more values than registers would only move
/// the spills from memory the code chose to memory the compiler chose.
pub(crate) const MAX_TILE_ELEMENTS: usize = 256;

/// The accesses of a temporary seen by a dry run.
#[derive(Debug)]
pub(crate) struct Recording {
    elements: usize,
    spans: Vec<(usize, usize)>,
    promotable: bool,
}

impl Recording {
    /// An empty recording of a temporary with `elements` elements.
    pub fn new(elements: usize) -> Recording {
        Recording {
            elements,
            spans: Vec::new(),
            promotable: true,
        }
    }

    /// Records one access: the element offset of each lane (one lane for a scalar access).
    pub fn record(&mut self, lanes: &[Lin]) {
        let elements: Option<Vec<usize>> = lanes
            .iter()
            .map(|offset| {
                offset
                    .as_const()
                    .and_then(|element| usize::try_from(element).ok())
                    .filter(|element| *element < self.elements)
            })
            .collect();
        let Some(elements) = elements else {
            // A run-time index (or one past the end under a guard the printer cannot decide):
            // the temporary needs addressable memory.
            self.promotable = false;
            return;
        };
        let contiguous = elements
            .iter()
            .enumerate()
            .all(|(lane, element)| *element == elements[0] + lane);
        if elements.len() > 1 && contiguous {
            self.spans.push((elements[0], elements.len()));
        } else {
            self.spans
                .extend(elements.iter().map(|element| (*element, 1)));
        }
    }

    /// The tile's variables (named `NAME__ELEMENT`), or `None` if the temporary must stay in
    /// memory.
    pub fn plan(mut self, name: &str) -> Option<Tile> {
        if !self.promotable {
            return None;
        }
        self.spans.sort_unstable();
        self.spans.dedup();
        let mut wide_spans_over = vec![0usize; self.elements];
        let mut touched = vec![false; self.elements];
        for &(start, width) in &self.spans {
            for element in start..start + width {
                touched[element] = true;
                if width > 1 {
                    wide_spans_over[element] += 1;
                }
            }
        }
        let mut tile = Tile {
            slots: Vec::new(),
            element: vec![None; self.elements],
        };
        for &(start, width) in &self.spans {
            let clean = (start..start + width).all(|element| wide_spans_over[element] == 1);
            if width > 1 && clean {
                let slot = tile.slots.len();
                tile.slots.push(Slot {
                    code: format!("{name}__{start}"),
                    width,
                });
                for lane in 0..width {
                    tile.element[start + lane] = Some((slot, lane));
                }
            }
        }
        for (element, touched) in touched.into_iter().enumerate() {
            if touched && tile.element[element].is_none() {
                tile.element[element] = Some((tile.slots.len(), 0));
                tile.slots.push(Slot {
                    code: format!("{name}__{element}"),
                    width: 1,
                });
            }
        }
        Some(tile)
    }
}

/// One local variable of a tile: a scalar or a vector of `width` lanes.
#[derive(Debug)]
struct Slot {
    code: String,
    width: usize,
}

/// A temporary held in local variables.
#[derive(Debug)]
pub(crate) struct Tile {
    slots: Vec<Slot>,
    /// For each element, its variable and lane (`None`: never accessed).
    element: Vec<Option<(usize, usize)>>,
}

impl Tile {
    /// The declarations of the variables. The IR leaves a temporary's contents undefined; zero
    /// is a definition that costs nothing and keeps compilers from warning.
    pub fn declarations(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|slot| match slot.width {
                1 => format!("float {} = 0.0f;", slot.code),
                width => format!("{} {} = {{0}};", vector_type(width), slot.code),
            })
            .collect()
    }

    /// The lvalue of one element, if it was recorded.
    pub fn element(&self, element: i64) -> Option<String> {
        let (slot, lane) = (*self.element.get(usize::try_from(element).ok()?)?)?;
        let slot = &self.slots[slot];
        Some(if slot.width == 1 {
            slot.code.clone()
        } else {
            format!("{}[{lane}]", slot.code)
        })
    }

    /// The vector variable holding exactly `elements`, lane for lane, if there is one.
    pub fn whole(&self, elements: &[i64]) -> Option<String> {
        let first = usize::try_from(*elements.first()?).ok()?;
        let (slot, lane) = (*self.element.get(first)?)?;
        let slot = &self.slots[slot];
        let exact = lane == 0
            && slot.width == elements.len()
            && elements
                .iter()
                .enumerate()
                .all(|(lane, element)| usize::try_from(*element) == Ok(first + lane));
        exact.then(|| slot.code.clone())
    }
}
