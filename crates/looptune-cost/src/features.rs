//! Fixed-length features of a config, read from its lowered loop nest.
//!
//! The features follow AutoTVM's "itervar" features. The nest is reduced to its *main chain*:
//! the loops around the store that runs the most iterations (the reduction of a matmul or a
//! convolution; packing copies and epilogues run far fewer). For each loop of that chain,
//! outermost first, come its extent, a one-hot of its [`LoopKind`], the product of the extents
//! outside it and of the extents from it inwards, and, for each access of the main store (the
//! store itself first, then its loads in order), the access's stride with respect to the loop's
//! variable, the bytes it touches from that loop inwards and its reuse there (iterations per
//! element touched). Then come whole-nest counts (arithmetic of the main store, guards, loops,
//! temporary bytes), then how the chain fits the vector machine of the task (`fit.rs`: register
//! pressure of the register tile, lane use, bytes moved per cache level, reduction order, as
//! ratios to the task's [`VectorShape`]), and finally the raw knob choices of the config.
//!
//! Every number except the knob choices is scaled by `log2(1 + x)`.
//!
//! **Invariant:** the length of a feature vector depends on the task only. The number of loop
//! slots and access slots is decided by [`FeatureSpec::for_task`] from the task's space and
//! program before any config is seen, never by padding a batch to its longest member after the
//! fact; a chain longer than the slots keeps its innermost loops, a shorter one is padded with
//! zeros (a real loop has extent at least 1, so its extent feature is at least 1 and a padded
//! slot is told apart).

use crate::error::CostError;
use looptune_ir::{
    BinaryOp, BufferId, Cond, IndexExpr, Load, Loop, LoopKind, LoopNest, Stmt, ValueExpr, VarId,
};
use looptune_space::{Config, KnobKind, Task, VectorShape};

mod fit;

/// Features per access at each loop: stride, touched bytes, reuse.
const PER_ACCESS: usize = 3;

/// Features per loop slot besides its accesses: extent, four kind flags, outer and inner
/// products of extents.
const PER_LOOP: usize = 7;

/// Whole-nest features: fma, add/sub, mul, other arithmetic and loads of the main store; guards
/// around it; depth of the main chain; loops, stores, guards and temporary bytes of the nest;
/// iterations of the main store.
const GLOBAL: usize = 12;

/// At most this many accesses of the main store are described.
const MAX_ACCESS_SLOTS: usize = 6;

/// How features of one task are laid out: the same for every config of the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSpec {
    loop_slots: usize,
    access_slots: usize,
    knobs: usize,
    /// The vector machine the fit features are ratios to.
    shape: VectorShape,
}

impl FeatureSpec {
    /// The layout for `task`. Loop slots: every part of every split knob is a loop, and a
    /// register tile computed at a loop adds at most a few loops of its own, so the sum of split
    /// parts plus two bounds the main chain of the templates. Access slots: the main store
    /// writes one buffer, may read it back (an accumulation) and reads each input once.
    pub fn for_task(task: &Task) -> FeatureSpec {
        let space = task.space();
        let split_parts: usize = space
            .knobs()
            .iter()
            .filter(|knob| matches!(knob.kind(), KnobKind::Split { .. }))
            .map(|knob| match knob.values().first() {
                Some(looptune_space::KnobValue::Split(parts)) => parts.len(),
                _ => 1,
            })
            .sum();
        let inputs = task
            .reference_program()
            .map_or(2, |program| program.inputs().len());
        FeatureSpec {
            loop_slots: (split_parts + 2).max(4),
            access_slots: (inputs + 2).min(MAX_ACCESS_SLOTS),
            knobs: space.knobs().len(),
            shape: *task.vector_shape(),
        }
    }

    /// A layout with explicit slot counts (for tests and hand-made nests), for `shape`.
    pub fn with_slots(
        loop_slots: usize,
        access_slots: usize,
        knobs: usize,
        shape: VectorShape,
    ) -> FeatureSpec {
        FeatureSpec {
            loop_slots,
            access_slots,
            knobs,
            shape,
        }
    }

    /// Loop slots of the main chain.
    pub fn loop_slots(&self) -> usize {
        self.loop_slots
    }

    /// Access slots per loop.
    pub fn access_slots(&self) -> usize {
        self.access_slots
    }

    /// The length of every feature vector of this layout.
    pub fn len(&self) -> usize {
        self.loop_slots * (PER_LOOP + PER_ACCESS * self.access_slots)
            + GLOBAL
            + fit::COUNT
            + self.knobs
    }

    /// The columns holding the raw knob choices (the last ones). A choice is a position in a
    /// knob's list of values, and a split knob's list depends on the extent it splits, so these
    /// columns mean different things for different shapes of one operator; everything before
    /// them (extents, strides, bytes, reuse, counts) is comparable across shapes. Transfer
    /// learning marks these columns missing on rows of other shapes.
    pub fn knob_columns(&self) -> std::ops::Range<usize> {
        self.len() - self.knobs..self.len()
    }

    /// Whether vectors are empty (never: a layout has at least its whole-nest features).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A name per feature, in order (`loop3.extent`, `loop3.access1.stride`, `fma`,
    /// `knob2`...), for inspecting a model.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.len());
        for slot in 0..self.loop_slots {
            for what in [
                "extent",
                "serial",
                "unrolled",
                "vectorized",
                "parallel",
                "outer_product",
                "inner_product",
            ] {
                names.push(format!("loop{slot}.{what}"));
            }
            for access in 0..self.access_slots {
                for what in ["stride", "bytes", "reuse"] {
                    names.push(format!("loop{slot}.access{access}.{what}"));
                }
            }
        }
        for what in [
            "fma",
            "add",
            "mul",
            "other_arith",
            "loads",
            "chain_guards",
            "chain_depth",
            "loops",
            "stores",
            "guards",
            "temp_bytes",
            "iterations",
        ] {
            names.push(what.to_string());
        }
        names.extend(fit::NAMES.iter().map(|name| name.to_string()));
        for knob in 0..self.knobs {
            names.push(format!("knob{knob}"));
        }
        names
    }

    /// The features of `config` of `task`: lowers it and reads the nest.
    pub fn extract(&self, task: &Task, config: &Config) -> Result<Vec<f32>, CostError> {
        let nest = task.lower(config).map_err(|error| CostError::Lower {
            config: config.to_string(),
            message: error.to_string(),
        })?;
        let mut features = Vec::with_capacity(self.len());
        self.extract_nest(&nest, config.choices(), &mut features)?;
        Ok(features)
    }

    /// Appends the features of `nest` and the knob `choices` to `out` (exactly
    /// [`len`](Self::len) values). Fails when `choices` has the wrong number of knobs.
    pub fn extract_nest(
        &self,
        nest: &LoopNest,
        choices: &[usize],
        out: &mut Vec<f32>,
    ) -> Result<(), CostError> {
        if choices.len() != self.knobs {
            return Err(CostError::KnobCount {
                expected: self.knobs,
                found: choices.len(),
            });
        }
        let start = out.len();
        let scan = scan(nest);
        let chain = &scan.chain;
        let kept = &chain[chain.len().saturating_sub(self.loop_slots)..];
        let all_accesses = main_accesses(&scan);
        let accesses = &all_accesses[..all_accesses.len().min(self.access_slots)];
        // Per access, per kept loop and per dimension: the coefficient of the loop's variable.
        let coefficients: Vec<Vec<Vec<i64>>> = accesses
            .iter()
            .map(|access| {
                kept.iter()
                    .map(|looped| {
                        access
                            .indices
                            .iter()
                            .map(|index| coefficient(index, looped.var))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let outer_all: f64 = chain[..chain.len() - kept.len()]
            .iter()
            .map(|looped| looped.extent as f64)
            .product();
        let mut outer = outer_all;
        for (slot, looped) in kept.iter().enumerate() {
            let inner: f64 = kept[slot..].iter().map(|l| l.extent as f64).product();
            push(out, looped.extent as f64);
            for kind in [
                LoopKind::Serial,
                LoopKind::Unrolled,
                LoopKind::Vectorized,
                LoopKind::Parallel,
            ] {
                out.push(if looped.kind == kind { 1.0 } else { 0.0 });
            }
            push(out, outer);
            push(out, inner);
            outer *= looped.extent as f64;
            for access_slot in 0..self.access_slots {
                let (Some(access), Some(per_dim)) =
                    (accesses.get(access_slot), coefficients.get(access_slot))
                else {
                    out.extend_from_slice(&[0.0; PER_ACCESS]);
                    continue;
                };
                let buffer = nest.buffer(access.buffer);
                let strides = buffer.strides();
                let stride: i64 = per_dim[slot]
                    .iter()
                    .zip(&strides)
                    .map(|(c, s)| c.saturating_mul(*s))
                    .fold(0i64, |a, b| a.saturating_add(b));
                let mut elements = 1.0f64;
                for (dim, &extent) in buffer.shape.iter().enumerate() {
                    let mut range = 1.0f64;
                    for (inner_slot, inner_loop) in kept.iter().enumerate().skip(slot) {
                        range += per_dim[inner_slot][dim].unsigned_abs() as f64
                            * (inner_loop.extent - 1) as f64;
                    }
                    elements *= range.min(extent as f64);
                }
                push(out, stride.unsigned_abs() as f64);
                push(out, elements * buffer.dtype.size_bytes() as f64);
                push(out, inner / elements.max(1.0));
            }
        }
        for _ in kept.len()..self.loop_slots {
            out.extend(std::iter::repeat_n(
                0.0,
                PER_LOOP + PER_ACCESS * self.access_slots,
            ));
        }
        let arith = scan.main_value.map(arithmetic).unwrap_or_default();
        push(out, arith.fma as f64);
        push(out, arith.add as f64);
        push(out, arith.mul as f64);
        push(out, arith.other as f64);
        push(out, arith.loads as f64);
        push(out, scan.chain_guards as f64);
        push(out, chain.len() as f64);
        push(out, scan.loops as f64);
        push(out, scan.stores as f64);
        push(out, scan.guards as f64);
        push(out, scan.temp_bytes as f64);
        push(out, scan.best_iterations);
        for value in fit::fit_features(
            nest,
            chain,
            &all_accesses,
            scan.main_alloc_depth,
            scan.best_iterations,
            &self.shape,
        ) {
            push(out, value);
        }
        out.extend(choices.iter().map(|&choice| choice as f32));
        debug_assert_eq!(out.len() - start, self.len());
        Ok(())
    }
}

/// Appends `log2(1 + x)`.
fn push(out: &mut Vec<f32>, value: f64) {
    out.push((1.0 + value.max(0.0)).log2() as f32);
}

/// One loop of the main chain.
#[derive(Clone, Copy, Debug)]
struct ChainLoop {
    var: VarId,
    extent: i64,
    kind: LoopKind,
}

/// What one walk over the nest finds.
struct Scan<'a> {
    chain: Vec<ChainLoop>,
    chain_guards: usize,
    best_iterations: f64,
    main_store: Option<(BufferId, &'a [IndexExpr])>,
    main_value: Option<&'a ValueExpr>,
    /// How many chain loops enclose the allocation of the main store's buffer (0 when it is
    /// not allocated in the nest): the loops outside it do not carry the accumulator.
    main_alloc_depth: usize,
    loops: usize,
    stores: usize,
    guards: usize,
    temp_bytes: usize,
}

/// Walks the nest once: counts, and the loops around the store with the most iterations (the
/// first such store on a tie, so the choice is deterministic).
fn scan(nest: &LoopNest) -> Scan<'_> {
    struct Walker<'a> {
        nest: &'a LoopNest,
        stack: Vec<ChainLoop>,
        guards_open: usize,
        /// Buffers allocated around the current statement, with the loop depth of each.
        allocs_open: Vec<(BufferId, usize)>,
        scan: Scan<'a>,
    }
    impl<'a> Walker<'a> {
        fn visit(&mut self, stmt: &'a Stmt) {
            match stmt {
                Stmt::For(looped) => {
                    let Loop {
                        var,
                        extent,
                        kind,
                        body,
                    } = &**looped;
                    self.scan.loops += 1;
                    self.stack.push(ChainLoop {
                        var: *var,
                        extent: *extent,
                        kind: *kind,
                    });
                    self.visit(body);
                    self.stack.pop();
                }
                Stmt::Seq(stmts) => stmts.iter().for_each(|stmt| self.visit(stmt)),
                Stmt::Store {
                    buffer,
                    indices,
                    value,
                } => {
                    self.scan.stores += 1;
                    let iterations: f64 = self.stack.iter().map(|l| l.extent as f64).product();
                    if self.scan.main_store.is_none() || iterations > self.scan.best_iterations {
                        self.scan.best_iterations = iterations;
                        self.scan.chain.clear();
                        self.scan.chain.extend_from_slice(&self.stack);
                        self.scan.chain_guards = self.guards_open;
                        self.scan.main_store = Some((*buffer, indices));
                        self.scan.main_value = Some(value);
                        self.scan.main_alloc_depth = self
                            .allocs_open
                            .iter()
                            .rev()
                            .find(|(allocated, _)| allocated == buffer)
                            .map_or(0, |&(_, depth)| depth);
                    }
                }
                Stmt::If { then, .. } => {
                    self.scan.guards += 1;
                    self.guards_open += 1;
                    self.visit(then);
                    self.guards_open -= 1;
                }
                Stmt::Alloc { buffer, body } => {
                    let decl = self.nest.buffer(*buffer);
                    self.scan.temp_bytes += decl.len() * decl.dtype.size_bytes();
                    self.allocs_open.push((*buffer, self.stack.len()));
                    self.visit(body);
                    self.allocs_open.pop();
                }
            }
        }
    }
    let mut walker = Walker {
        nest,
        stack: Vec::with_capacity(16),
        guards_open: 0,
        allocs_open: Vec::new(),
        scan: Scan {
            chain: Vec::with_capacity(16),
            chain_guards: 0,
            best_iterations: 0.0,
            main_store: None,
            main_value: None,
            main_alloc_depth: 0,
            loops: 0,
            stores: 0,
            guards: 0,
            temp_bytes: 0,
        },
    };
    walker.visit(&nest.body);
    walker.scan
}

/// A buffer access of the main store.
struct Access<'a> {
    buffer: BufferId,
    indices: &'a [IndexExpr],
}

/// The main store's write, then its loads in order.
fn main_accesses<'a>(scan: &Scan<'a>) -> Vec<Access<'a>> {
    let mut accesses = Vec::with_capacity(MAX_ACCESS_SLOTS);
    if let Some((buffer, indices)) = scan.main_store {
        accesses.push(Access { buffer, indices });
    }
    if let Some(value) = scan.main_value {
        let mut loads = Vec::new();
        collect_loads(value, &mut loads);
        accesses.extend(loads.into_iter().map(|load| Access {
            buffer: load.buffer,
            indices: &load.indices,
        }));
    }
    accesses
}

/// The loads of `value`, operands left to right (a select's condition first).
fn collect_loads<'a>(value: &'a ValueExpr, out: &mut Vec<&'a Load>) {
    match value {
        ValueExpr::Const(_) | ValueExpr::FromIndex(..) => {}
        ValueExpr::Load(load) => out.push(load),
        ValueExpr::Binary(_, a, b) => {
            collect_loads(a, out);
            collect_loads(b, out);
        }
        ValueExpr::Unary(_, a) | ValueExpr::Cast(_, a) => collect_loads(a, out),
        ValueExpr::Fma(a, b, c) => {
            collect_loads(a, out);
            collect_loads(b, out);
            collect_loads(c, out);
        }
        ValueExpr::Select(cond, a, b) => {
            collect_cond_loads(cond, out);
            collect_loads(a, out);
            collect_loads(b, out);
        }
    }
}

/// The loads inside a condition, in order.
fn collect_cond_loads<'a>(cond: &'a Cond, out: &mut Vec<&'a Load>) {
    match cond {
        Cond::Const(_) | Cond::Index(..) => {}
        Cond::Value(_, a, b) => {
            collect_loads(a, out);
            collect_loads(b, out);
        }
        Cond::And(a, b) | Cond::Or(a, b) => {
            collect_cond_loads(a, out);
            collect_cond_loads(b, out);
        }
        Cond::Not(a) => collect_cond_loads(a, out),
    }
}

/// How much `index` moves when `var` goes from 0 to 1 with every other variable at 0: the
/// coefficient for an affine index (what the simplifier leaves), an estimate otherwise.
fn coefficient(index: &IndexExpr, var: VarId) -> i64 {
    if !index.uses_var(var) {
        return 0;
    }
    let at = |value: i64| {
        index
            .eval(&|v| Some(if v == var { value } else { 0 }))
            .unwrap_or(0)
    };
    at(1).saturating_sub(at(0))
}

/// Arithmetic of one value expression.
#[derive(Clone, Copy, Debug, Default)]
struct Arithmetic {
    fma: usize,
    add: usize,
    mul: usize,
    other: usize,
    loads: usize,
}

fn arithmetic(value: &ValueExpr) -> Arithmetic {
    let mut counts = Arithmetic::default();
    value.walk(&mut |expr| match expr {
        ValueExpr::Fma(..) => counts.fma += 1,
        ValueExpr::Binary(BinaryOp::Add | BinaryOp::Sub, ..) => counts.add += 1,
        ValueExpr::Binary(BinaryOp::Mul, ..) => counts.mul += 1,
        ValueExpr::Binary(..) | ValueExpr::Unary(..) | ValueExpr::Select(..) => counts.other += 1,
        ValueExpr::Load(_) => counts.loads += 1,
        ValueExpr::Const(_) | ValueExpr::Cast(..) | ValueExpr::FromIndex(..) => {}
    });
    counts
}

#[cfg(test)]
mod tests;
