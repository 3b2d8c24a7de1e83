//! Register tiles: temporaries kept in local variables instead of memory.
//!
//! A temporary qualifies when every access in its scope has constant indices once unrolled
//! loops are unrolled and vector groups split into lanes (the accumulator block of a BLIS-style
//! micro-kernel: rows unrolled, columns vectorized). Which variables it becomes depends on how
//! the code touches it: the dry run of its scope records every access as the list of elements
//! its lanes touch (one element for a scalar access, `width` elements for a vector one, which
//! need not be contiguous: a convolution tile vectorized over channels holds them rows x columns
//! apart). A lane list that no other vector access overlaps becomes one vector variable, lane
//! for lane; every other element touched gets a scalar variable, and a vector access over such
//! elements is assembled lane by lane. The compiler then sees only local variables, which it
//! keeps in registers across the loops.

use super::index::Lin;
use super::prelude::vector_type_of;
use looptune_ir::DType;

/// Temporaries with more elements stay in memory: more values than registers would only move
/// the spills from memory the code chose to memory the compiler chose.
pub(crate) const MAX_TILE_ELEMENTS: usize = 256;

/// The accesses of a temporary seen by a dry run.
#[derive(Debug)]
pub(crate) struct Recording {
    elements: usize,
    /// The elements of each access, lane by lane.
    groups: Vec<Vec<usize>>,
    promotable: bool,
}

impl Recording {
    /// An empty recording of a temporary with `elements` elements.
    pub fn new(elements: usize) -> Recording {
        Recording {
            elements,
            groups: Vec::new(),
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
        let distinct = elements
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if elements.len() > 1 && distinct == elements.len() {
            self.groups.push(elements);
        } else {
            self.groups
                .extend(elements.iter().map(|element| vec![*element]));
        }
    }

    /// The tile's variables (named `NAME__ELEMENT`), or `None` if the temporary must stay in
    /// memory.
    pub fn plan(mut self, name: &str, dtype: DType) -> Option<Tile> {
        if !self.promotable {
            return None;
        }
        self.groups.sort_unstable();
        self.groups.dedup();
        let mut wide_groups_over = vec![0usize; self.elements];
        let mut touched = vec![false; self.elements];
        for group in &self.groups {
            for &element in group {
                touched[element] = true;
                if group.len() > 1 {
                    wide_groups_over[element] += 1;
                }
            }
        }
        let mut tile = Tile {
            dtype,
            slots: Vec::new(),
            element: vec![None; self.elements],
        };
        for group in &self.groups {
            let clean = group.iter().all(|&element| wide_groups_over[element] == 1);
            if group.len() > 1 && clean {
                let slot = tile.slots.len();
                tile.slots.push(Slot {
                    code: format!("{name}__{}", group[0]),
                    width: group.len(),
                });
                for (lane, &element) in group.iter().enumerate() {
                    tile.element[element] = Some((slot, lane));
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
    dtype: DType,
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
                1 if self.dtype == DType::F32 => format!("float {} = 0.0f;", slot.code),
                1 => format!("{} {} = 0;", super::types::c_type(self.dtype), slot.code),
                width => format!(
                    "{} {} = {{0}};",
                    vector_type_of(self.dtype, width),
                    slot.code
                ),
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
        let (slot, _) = (*self.element.get(first)?)?;
        let code = &self.slots[slot];
        let exact = code.width == elements.len()
            && elements.iter().enumerate().all(|(lane, &element)| {
                usize::try_from(element)
                    .ok()
                    .and_then(|element| *self.element.get(element)?)
                    == Some((slot, lane))
            });
        exact.then(|| code.code.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recording: &mut Recording, elements: &[i64]) {
        let lanes: Vec<Lin> = elements
            .iter()
            .map(|&element| Lin::constant(element))
            .collect();
        recording.record(&lanes);
    }

    #[test]
    fn strided_vector_accesses_become_one_vector_variable_lane_for_lane() {
        // A 2 x 4 tile vectorized along its first axis: lanes 4 elements apart.
        let mut recording = Recording::new(8);
        for column in 0..4 {
            record(&mut recording, &[column, column + 4]);
            record(&mut recording, &[column, column + 4]);
        }
        let tile = recording.plan("T", DType::F32).expect("constant indices");
        assert_eq!(tile.declarations().len(), 4, "{:?}", tile.declarations());
        assert_eq!(tile.whole(&[1, 5]).as_deref(), Some("T__1"));
        assert_eq!(tile.element(5).as_deref(), Some("T__1[1]"));
        // The same elements in another lane order are not that variable.
        assert_eq!(tile.whole(&[5, 1]), None);
    }

    #[test]
    fn overlapping_vector_accesses_fall_back_to_scalars() {
        let mut recording = Recording::new(4);
        record(&mut recording, &[0, 1]);
        record(&mut recording, &[1, 2]);
        let tile = recording.plan("T", DType::F32).expect("constant indices");
        assert_eq!(tile.whole(&[0, 1]), None);
        assert_eq!(tile.element(1).as_deref(), Some("T__1"));
        assert_eq!(tile.declarations().len(), 3);
    }

    #[test]
    fn a_run_time_index_keeps_the_temporary_in_memory() {
        let mut recording = Recording::new(4);
        record(&mut recording, &[0, 1]);
        record(&mut recording, &[7]);
        assert!(recording.plan("T", DType::F32).is_none());
    }
}
