//! Lowering: a [`Schedule`] becomes a [`LoopNest`].
//!
//! Each stage placed at the root becomes a loop nest over its leaf axes; each attached stage
//! becomes a nest inside its consumer's loop, over the region the consumer's inner loops read
//! (inferred from the consumer's load indices, which are affine in practice), into a temporary
//! of that region's size. Root axis values are rebuilt from leaf loop variables through the
//! split and fuse relations; split tails and region edges get guards, placed at the innermost
//! loop whose variable they use. Reductions get an initialising nest just before their outermost
//! reduction loop. The result is simplified and verified before it is returned.

use crate::error::LowerError;
use crate::expr::{BufferId, Cond, IndexExpr, ValueExpr, VarId};
use crate::loop_nest::{BufferDecl, BufferRole, Loop, LoopKind, LoopNest, Stmt, VarDecl};
use crate::program::{ComputeBody, ReduceOp};
use crate::schedule::{Attach, AxisId, AxisKind, Relation, Schedule, SplitBy, StageId};
use std::collections::{BTreeMap, HashMap};

/// Lowers a schedule to a simplified, verified loop nest.
pub fn lower(schedule: &Schedule) -> Result<LoopNest, LowerError> {
    let nest = lower_unsimplified(schedule)?;
    let nest = crate::simplify::simplify(nest);
    // Cut loops where tail and padding guards switch, so the bulk of the work runs unguarded.
    let nest = crate::simplify::simplify(crate::partition::partition_loops(nest));
    crate::verify::verify(&nest).map_err(|err| LowerError::Verify(err.to_string()))?;
    Ok(nest)
}

/// Lowers a schedule without simplifying (for tests of the simplifier and of lowering itself).
pub fn lower_unsimplified(schedule: &Schedule) -> Result<LoopNest, LowerError> {
    let mut lowering = Lowering::new(schedule);
    let mut statements = Vec::new();
    for &stage in schedule.stage_order() {
        if schedule.stage_data(stage).attach == Attach::Root {
            let region = lowering.full_region(stage);
            statements.push(lowering.stage(stage, region, false)?);
        }
    }
    let mut body = Stmt::Seq(statements);
    for buffer in lowering.root_temps.iter().rev() {
        body = Stmt::Alloc {
            buffer: *buffer,
            body: Box::new(body),
        };
    }
    let program = schedule.program();
    Ok(LoopNest {
        name: program.name.clone(),
        inputs: program
            .inputs()
            .iter()
            .map(|tensor| lowering.buffer_map[tensor])
            .collect(),
        outputs: program
            .outputs
            .iter()
            .map(|tensor| lowering.buffer_map[tensor])
            .collect(),
        buffers: lowering.buffers,
        vars: lowering.vars,
        body,
    })
}

/// The part of a tensor a stage computes: per dimension, the first index (an expression in
/// enclosing loop variables) and the extent. A root stage's region is the whole tensor.
#[derive(Clone, Debug)]
struct Region {
    low: Vec<IndexExpr>,
    extents: Vec<i64>,
    /// Whether the dimension is the tensor's whole extent (no offset, no edge guards).
    full: Vec<bool>,
}

/// An attached stage as its consumer sees it.
struct Attached {
    stage: StageId,
    region: Region,
    buffer: BufferId,
}

struct Lowering<'a> {
    schedule: &'a Schedule,
    buffers: Vec<BufferDecl>,
    vars: Vec<VarDecl>,
    /// Program tensor -> nest buffer, for tensors that have storage.
    buffer_map: HashMap<BufferId, BufferId>,
    /// Temporaries of root stages, allocated around the whole kernel.
    root_temps: Vec<BufferId>,
    /// The first index of each dimension of attached stages, once their consumer computed it.
    region_low: HashMap<BufferId, Vec<IndexExpr>>,
}

/// Everything about one stage's loops needed while emitting them.
struct StageLoops {
    stage: StageId,
    leaves: Vec<AxisId>,
    extents: Vec<i64>,
    vars: Vec<VarId>,
    kinds: Vec<LoopKind>,
    spatial: Vec<bool>,
    /// Guards with the leaf position they are placed at.
    guards: Vec<(usize, Cond)>,
    first_reduce: Option<usize>,
    init: Option<Stmt>,
    update: Stmt,
    attached: HashMap<usize, Vec<Attached>>,
}

impl<'a> Lowering<'a> {
    fn new(schedule: &'a Schedule) -> Lowering<'a> {
        let mut lowering = Lowering {
            schedule,
            buffers: Vec::new(),
            vars: Vec::new(),
            buffer_map: HashMap::new(),
            root_temps: Vec::new(),
            region_low: HashMap::new(),
        };
        let program = schedule.program();
        for tensor in program.inputs() {
            lowering.add_buffer(
                tensor,
                program.tensor(tensor).shape.clone(),
                BufferRole::Input,
            );
        }
        for &tensor in &program.outputs {
            lowering.add_buffer(
                tensor,
                program.tensor(tensor).shape.clone(),
                BufferRole::Output,
            );
        }
        lowering
    }

    fn add_buffer(&mut self, tensor: BufferId, shape: Vec<i64>, role: BufferRole) -> BufferId {
        let decl = self.schedule.program().tensor(tensor);
        let id = BufferId(self.buffers.len() as u32);
        self.buffers.push(BufferDecl {
            name: decl.name.clone(),
            dtype: decl.dtype,
            shape,
            role,
        });
        self.buffer_map.insert(tensor, id);
        id
    }

    fn new_var(&mut self, name: &str) -> VarId {
        let mut unique = name.to_string();
        let mut suffix = 1;
        while self.vars.iter().any(|var| var.name == unique) {
            unique = format!("{name}.{suffix}");
            suffix += 1;
        }
        self.vars.push(VarDecl { name: unique });
        VarId(self.vars.len() as u32 - 1)
    }

    fn stage_name(&self, stage: StageId) -> String {
        self.schedule.stage_name(stage).to_string()
    }

    fn full_region(&self, stage: StageId) -> Region {
        let shape = &self.schedule.tensor(stage).shape;
        Region {
            low: vec![IndexExpr::Const(0); shape.len()],
            extents: shape.clone(),
            full: vec![true; shape.len()],
        }
    }

    /// The stage's value expression with inlined producers substituted.
    fn expand(&self, value: &ValueExpr) -> ValueExpr {
        value.rewrite(&|index| index.clone(), &|node| match node {
            ValueExpr::Load(load) => match self.inlined_body(load.buffer) {
                Some((vars, body)) => {
                    let substituted = body.substitute(&|var| {
                        vars.iter()
                            .position(|&v| v == var)
                            .map(|dim| load.indices[dim].clone())
                    });
                    self.expand(&substituted)
                }
                None => ValueExpr::Load(load),
            },
            other => other,
        })
    }

    fn inlined_body(&self, tensor: BufferId) -> Option<(Vec<VarId>, ValueExpr)> {
        let stage = self.schedule.stage_of(tensor)?;
        if self.schedule.stage_data(stage).attach != Attach::Inline {
            return None;
        }
        let def = self.schedule.tensor(stage).compute()?;
        Some((
            def.axes.iter().map(|axis| axis.var).collect(),
            def.body.value().clone(),
        ))
    }

    /// Emits the nest of `stage` over `region`.
    fn stage(
        &mut self,
        stage: StageId,
        region: Region,
        in_parallel: bool,
    ) -> Result<Stmt, LowerError> {
        let loops = self.stage_loops(stage, &region)?;
        self.emit(&loops, 0, in_parallel)
    }

    fn stage_loops(&mut self, stage: StageId, region: &Region) -> Result<StageLoops, LowerError> {
        let schedule = self.schedule;
        let data = schedule.stage_data(stage);
        let tensor = schedule.tensor(stage);
        let def = tensor.compute().ok_or_else(|| {
            LowerError::Verify(format!("stage `{}` has no definition", tensor.name))
        })?;

        // Extents of every axis, root first, then through the relations in order.
        let mut extent: HashMap<AxisId, i64> = HashMap::new();
        for (dim, &axis) in data.spatial.iter().enumerate() {
            extent.insert(axis, region.extents[dim]);
        }
        for (index, &axis) in data.reduce.iter().enumerate() {
            extent.insert(axis, def.body.reduce_axes()[index].extent);
        }
        for relation in &data.relations {
            match *relation {
                Relation::Split {
                    parent,
                    outer,
                    inner,
                    by,
                } => {
                    let total = extent[&parent];
                    let (outer_extent, inner_extent) = match by {
                        SplitBy::Factor(factor) => {
                            let inner_extent = factor.min(total);
                            ((total + inner_extent - 1) / inner_extent, inner_extent)
                        }
                        SplitBy::Parts(parts) => {
                            let outer_extent = parts.min(total);
                            (outer_extent, (total + outer_extent - 1) / outer_extent)
                        }
                    };
                    extent.insert(outer, outer_extent);
                    extent.insert(inner, inner_extent);
                }
                Relation::Fuse {
                    outer,
                    inner,
                    fused,
                } => {
                    extent.insert(fused, extent[&outer] * extent[&inner]);
                }
            }
        }

        // One loop variable per leaf; root values rebuilt through the relations in reverse.
        let leaves = data.leaves.clone();
        let vars: Vec<VarId> = leaves
            .iter()
            .map(|&axis| {
                let name = schedule.axis_info(axis).name.clone();
                self.new_var(&name)
            })
            .collect();
        let mut value: HashMap<AxisId, IndexExpr> = leaves
            .iter()
            .zip(&vars)
            .map(|(&axis, &var)| (axis, IndexExpr::Var(var)))
            .collect();
        let mut guards_needed = Vec::new();
        for relation in data.relations.iter().rev() {
            match *relation {
                Relation::Split {
                    parent,
                    outer,
                    inner,
                    ..
                } => {
                    let parent_value = &value[&outer] * extent[&inner] + value[&inner].clone();
                    if extent[&outer] * extent[&inner] != extent[&parent] {
                        guards_needed.push(parent_value.clone().lt(extent[&parent]));
                    }
                    value.insert(parent, parent_value);
                }
                Relation::Fuse {
                    outer,
                    inner,
                    fused,
                } => {
                    let fused_value = value[&fused].clone();
                    value.insert(outer, fused_value.clone().floor_div(extent[&inner]));
                    value.insert(inner, fused_value.floor_mod(extent[&inner]));
                }
            }
        }

        // Definition variables in terms of loop variables; absolute coordinates of the tensor.
        let mut substitution: HashMap<VarId, IndexExpr> = HashMap::new();
        let mut store_indices = Vec::new();
        for (dim, (&axis, decl)) in data.spatial.iter().zip(&def.axes).enumerate() {
            let relative = value[&axis].clone();
            let absolute = if region.full[dim] {
                relative.clone()
            } else {
                region.low[dim].clone() + relative.clone()
            };
            if !region.full[dim] {
                guards_needed.push(absolute.clone().lt(tensor.shape[dim]));
                guards_needed.push(absolute.clone().ge(0));
            }
            substitution.insert(decl.var, absolute);
            store_indices.push(relative);
        }
        for (&axis, decl) in data.reduce.iter().zip(def.body.reduce_axes()) {
            substitution.insert(decl.var, value[&axis].clone());
        }
        let body = self
            .expand(def.body.value())
            .substitute(&|var| substitution.get(&var).cloned());

        // Stages computed at this stage's loops: their regions, buffers and first indices.
        let position_of_var: HashMap<VarId, usize> = vars
            .iter()
            .enumerate()
            .map(|(pos, &var)| (var, pos))
            .collect();
        let mut attached: HashMap<usize, Vec<Attached>> = HashMap::new();
        for &other in schedule.stage_order() {
            if let Attach::At { consumer, axis } = schedule.stage_data(other).attach {
                if consumer != stage {
                    continue;
                }
                let Some(position) = leaves.iter().position(|&leaf| leaf == axis) else {
                    return Err(LowerError::AttachAxisGone {
                        stage: self.stage_name(other),
                        consumer: self.stage_name(stage),
                        axis: schedule.axis_info(axis).name.clone(),
                    });
                };
                let inner: HashMap<VarId, i64> = ((position + 1)..leaves.len())
                    .map(|pos| (vars[pos], extent[&leaves[pos]]))
                    .collect();
                let other_tensor = schedule.stage_data(other).tensor;
                let region =
                    infer_region(&body, other_tensor, &schedule.tensor(other).shape, &inner);
                let buffer =
                    self.add_buffer(other_tensor, region.extents.clone(), BufferRole::Temp);
                self.region_low.insert(other_tensor, region.low.clone());
                attached.entry(position).or_default().push(Attached {
                    stage: other,
                    region,
                    buffer,
                });
            }
        }

        // Loads now name nest buffers, relative to the region of attached producers.
        let body = self.retarget_loads(stage, &body)?;
        let buffer = match self.buffer_map.get(&data.tensor) {
            Some(&buffer) => buffer,
            None => {
                let buffer = self.add_buffer(data.tensor, tensor.shape.clone(), BufferRole::Temp);
                self.root_temps.push(buffer);
                buffer
            }
        };
        let target = || ValueExpr::load(buffer, store_indices.clone());
        let store = |value: ValueExpr| Stmt::Store {
            buffer,
            indices: store_indices.clone(),
            value,
        };
        let (init, update) = match &def.body {
            ComputeBody::Elementwise(_) => (None, store(body)),
            ComputeBody::Reduce { op, .. } => (
                Some(store(ValueExpr::Const(op.identity(tensor.dtype)))),
                store(reduce_update(*op, target(), body)),
            ),
        };

        let guards = guards_needed
            .into_iter()
            .map(|cond| {
                let mut position = 0;
                let mut any = false;
                cond.for_each_index(&mut |index| {
                    index.for_each_var(&mut |var| {
                        if let Some(&pos) = position_of_var.get(&var) {
                            position = position.max(pos);
                            any = true;
                        }
                    })
                });
                (if any { position } else { 0 }, cond)
            })
            .collect();
        let spatial: Vec<bool> = leaves
            .iter()
            .map(|&axis| schedule.axis_info(axis).kind == AxisKind::Spatial)
            .collect();
        Ok(StageLoops {
            stage,
            extents: leaves.iter().map(|axis| extent[axis]).collect(),
            kinds: leaves
                .iter()
                .map(|&axis| schedule.axis_info(axis).annotation)
                .collect(),
            first_reduce: spatial.iter().position(|&is_spatial| !is_spatial),
            spatial,
            leaves,
            vars,
            guards,
            init,
            update,
            attached,
        })
    }

    /// Rewrites loads of program tensors to loads of nest buffers.
    fn retarget_loads(&self, stage: StageId, body: &ValueExpr) -> Result<ValueExpr, LowerError> {
        let mut error = None;
        body.for_each_load(&mut |load| {
            if error.is_some() || self.buffer_map.contains_key(&load.buffer) {
                return;
            }
            let reader = self.stage_name(stage);
            let source = self.schedule.program().tensor(load.buffer).name.clone();
            error = Some(
                match self
                    .schedule
                    .stage_of(load.buffer)
                    .map(|s| self.schedule.stage_data(s).attach)
                {
                    Some(Attach::At { consumer, .. }) => LowerError::AttachedReadElsewhere {
                        reader,
                        operand: source,
                        consumer: self.stage_name(consumer),
                    },
                    _ => LowerError::Verify(format!(
                        "`{reader}` reads `{source}` before it is computed"
                    )),
                },
            );
        });
        if let Some(error) = error {
            return Err(error);
        }
        Ok(body.rewrite(&|index| index.clone(), &|node| match node {
            ValueExpr::Load(mut load) => {
                if let Some(low) = self.region_low.get(&load.buffer) {
                    for (index, low) in load.indices.iter_mut().zip(low) {
                        if low.as_const() != Some(0) {
                            *index = index.clone() - low.clone();
                        }
                    }
                }
                load.buffer = self.buffer_map[&load.buffer];
                ValueExpr::Load(load)
            }
            other => other,
        }))
    }

    /// Emits the loops of `loops` from leaf position `position` inwards.
    fn emit(
        &mut self,
        loops: &StageLoops,
        position: usize,
        in_parallel: bool,
    ) -> Result<Stmt, LowerError> {
        if position == loops.leaves.len() {
            return Ok(loops.update.clone());
        }
        let kind = loops.kinds[position];
        let axis_name = || self.schedule.axis_info(loops.leaves[position]).name.clone();
        let stage_name = || self.stage_name(loops.stage);
        let attached = loops.attached.get(&position);
        if kind == LoopKind::Vectorized
            && (position + 1 != loops.leaves.len() || attached.is_some())
        {
            return Err(LowerError::VectorizeNotInnermost {
                stage: stage_name(),
                axis: axis_name(),
            });
        }
        if kind == LoopKind::Parallel && in_parallel {
            return Err(LowerError::NestedParallel {
                stage: stage_name(),
                axis: axis_name(),
            });
        }
        let in_parallel = in_parallel || kind == LoopKind::Parallel;
        let mut inner = self.emit(loops, position + 1, in_parallel)?;
        inner = wrap_guards(loops, position, inner);
        if let Some(attached) = attached {
            let mut statements = Vec::new();
            for stage in attached {
                statements.push(self.stage(stage.stage, stage.region.clone(), in_parallel)?);
            }
            statements.push(inner);
            inner = Stmt::Seq(statements);
            for stage in attached.iter().rev() {
                inner = Stmt::Alloc {
                    buffer: stage.buffer,
                    body: Box::new(inner),
                };
            }
        }
        let for_loop = Stmt::For(Box::new(Loop {
            var: loops.vars[position],
            extent: loops.extents[position],
            kind,
            body: inner,
        }));
        match (&loops.init, loops.first_reduce) {
            (Some(init), Some(first)) if first == position => Ok(Stmt::Seq(vec![
                init_nest(loops, position, init.clone()),
                for_loop,
            ])),
            _ => Ok(for_loop),
        }
    }
}

/// Wraps `inner` in the guards placed at `position`.
fn wrap_guards(loops: &StageLoops, position: usize, inner: Stmt) -> Stmt {
    let conds: Vec<Cond> = loops
        .guards
        .iter()
        .filter(|(pos, _)| *pos == position)
        .map(|(_, cond)| cond.clone())
        .collect();
    if conds.is_empty() {
        inner
    } else {
        Stmt::If {
            cond: Cond::all(conds),
            then: Box::new(inner),
        }
    }
}

/// The initialisation of a reduction: the spatial loops inside the first reduction loop, with
/// their guards, around the store of the identity.
fn init_nest(loops: &StageLoops, first_reduce: usize, init: Stmt) -> Stmt {
    let mut body = init;
    for position in (first_reduce + 1..loops.leaves.len()).rev() {
        if !loops.spatial[position] {
            continue;
        }
        body = wrap_guards(loops, position, body);
        let kind = match loops.kinds[position] {
            // The init copy is nested in whatever parallel loop surrounds the reduction.
            LoopKind::Parallel => LoopKind::Serial,
            other => other,
        };
        body = Stmt::For(Box::new(Loop {
            var: loops.vars[position],
            extent: loops.extents[position],
            kind,
            body,
        }));
    }
    body
}

fn reduce_update(op: ReduceOp, accumulator: ValueExpr, value: ValueExpr) -> ValueExpr {
    op.combine(accumulator, value)
}

/// `expr` as `sum(coefficient * var) + constant`, if it is affine in loop variables (the
/// simplifier's normal form with every atom a variable).
fn affine(expr: &IndexExpr) -> Option<(BTreeMap<VarId, i64>, i64)> {
    let sum = crate::simplify::normalize(expr, &|_| None)?;
    let mut terms = BTreeMap::new();
    for (atom, coefficient) in &sum.terms {
        match atom {
            IndexExpr::Var(var) => *terms.entry(*var).or_insert(0) += coefficient,
            _ => return None,
        }
    }
    terms.retain(|_, coefficient| *coefficient != 0);
    Some((terms, sum.constant))
}

/// The region of `tensor` that `body` reads while the `inner` loop variables run over their
/// extents and every other variable is fixed. Dimensions whose indices are not affine, or whose
/// loads disagree on the part that depends on outer variables, are taken whole.
fn infer_region(
    body: &ValueExpr,
    tensor: BufferId,
    shape: &[i64],
    inner: &HashMap<VarId, i64>,
) -> Region {
    let rank = shape.len();
    // Per dimension: the terms in outer variables, and the lowest and highest inner offsets.
    type Span = (BTreeMap<VarId, i64>, i64, i64);
    let mut per_dim: Vec<Option<Span>> = vec![None; rank];
    let mut whole = vec![false; rank];
    body.for_each_load(&mut |load| {
        if load.buffer != tensor {
            return;
        }
        for (dim, index) in load.indices.iter().enumerate() {
            let Some((terms, constant)) = affine(index) else {
                whole[dim] = true;
                continue;
            };
            let (mut outer_terms, mut low, mut high) = (BTreeMap::new(), constant, constant);
            for (var, coefficient) in terms {
                match inner.get(&var) {
                    Some(&extent) => {
                        let span = coefficient * (extent - 1);
                        low += span.min(0);
                        high += span.max(0);
                    }
                    None => {
                        outer_terms.insert(var, coefficient);
                    }
                }
            }
            per_dim[dim] = match per_dim[dim].take() {
                None => Some((outer_terms, low, high)),
                Some((terms, old_low, old_high)) if terms == outer_terms => {
                    Some((terms, old_low.min(low), old_high.max(high)))
                }
                Some(_) => {
                    whole[dim] = true;
                    None
                }
            };
        }
    });
    let mut region = Region {
        low: Vec::new(),
        extents: Vec::new(),
        full: Vec::new(),
    };
    for dim in 0..rank {
        match &per_dim[dim] {
            Some((terms, low, high)) if !whole[dim] && high - low + 1 < shape[dim] => {
                let mut low_expr = IndexExpr::Const(*low);
                for (&var, &coefficient) in terms {
                    low_expr = low_expr + IndexExpr::Var(var) * coefficient;
                }
                region.low.push(low_expr);
                region.extents.push(high - low + 1);
                region.full.push(false);
            }
            _ => {
                region.low.push(IndexExpr::Const(0));
                region.extents.push(shape[dim]);
                region.full.push(true);
            }
        }
    }
    region
}

#[cfg(test)]
mod tests;
