//! Typed element buffers: the data a kernel, the interpreter or the evaluator is called on.
//!
//! A nest's parameters can be of any [`DType`], so everything that hands buffers to code takes
//! one of these three views instead of `f32` slices: [`Data`] owns its elements, [`DataRef`]
//! and [`DataMut`] borrow them. Each knows its dtype and length, so a call checks both against
//! the parameter it fills. The `f32`-only entry points that predate integer kernels
//! (`interp::run`, `Kernel::call`) are thin wrappers over the typed ones.
//!
//! Values cross into the reference evaluators as `f64`, which holds every element of every
//! supported type exactly ([`Data::to_f64`], [`DataMut::set_from_f64`]).

use crate::dtype::DType;
use serde::{Deserialize, Serialize};

macro_rules! data_types {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// An owned buffer of elements of one dtype.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum Data {
            $(
                #[doc = concat!("Elements of `", stringify!($ty), "`.")]
                $variant(Vec<$ty>),
            )*
        }

        /// A shared view of a buffer of one dtype.
        #[derive(Clone, Copy, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum DataRef<'a> {
            $(
                #[doc = concat!("Elements of `", stringify!($ty), "`.")]
                $variant(&'a [$ty]),
            )*
        }

        /// An exclusive view of a buffer of one dtype.
        #[derive(Debug, PartialEq)]
        #[non_exhaustive]
        pub enum DataMut<'a> {
            $(
                #[doc = concat!("Elements of `", stringify!($ty), "`.")]
                $variant(&'a mut [$ty]),
            )*
        }

        impl Data {
            /// `len` zeros of `dtype`.
            pub fn zeros(dtype: DType, len: usize) -> Data {
                match dtype {
                    $(DType::$variant => Data::$variant(vec![<$ty>::default(); len]),)*
                }
            }

            /// The dtype of the elements.
            pub fn dtype(&self) -> DType {
                match self {
                    $(Data::$variant(_) => DType::$variant,)*
                }
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(Data::$variant(values) => values.len(),)*
                }
            }

            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// A shared view.
            pub fn as_ref(&self) -> DataRef<'_> {
                match self {
                    $(Data::$variant(values) => DataRef::$variant(values),)*
                }
            }

            /// An exclusive view.
            pub fn as_mut(&mut self) -> DataMut<'_> {
                match self {
                    $(Data::$variant(values) => DataMut::$variant(values),)*
                }
            }

            /// Element `index` as `f64` (exact for every dtype), `None` past the end.
            pub fn get_f64(&self, index: usize) -> Option<f64> {
                self.as_ref().get_f64(index)
            }

            /// Every element as `f64` (exact for every dtype).
            pub fn to_f64(&self) -> Vec<f64> {
                self.as_ref().to_f64()
            }

            /// A buffer of `dtype` holding `values`, each rounded (floats) or wrapped (integers,
            /// after truncation towards zero) to the type.
            pub fn from_f64(dtype: DType, values: &[f64]) -> Data {
                let mut data = Data::zeros(dtype, values.len());
                data.as_mut().set_from_f64(values);
                data
            }
        }

        impl<'a> DataRef<'a> {
            /// The dtype of the elements.
            pub fn dtype(&self) -> DType {
                match self {
                    $(DataRef::$variant(_) => DType::$variant,)*
                }
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(DataRef::$variant(values) => values.len(),)*
                }
            }

            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The address of the first element, for a backend's call boundary.
            pub fn as_ptr(&self) -> *const u8 {
                match self {
                    $(DataRef::$variant(values) => values.as_ptr() as *const u8,)*
                }
            }

            /// Element `index` as `f64`, `None` past the end.
            pub fn get_f64(&self, index: usize) -> Option<f64> {
                match self {
                    $(DataRef::$variant(values) => values.get(index).map(|&x| x as f64),)*
                }
            }

            /// Every element as `f64`.
            pub fn to_f64(&self) -> Vec<f64> {
                match self {
                    $(DataRef::$variant(values) => values.iter().map(|&x| x as f64).collect(),)*
                }
            }

            /// An owned copy.
            pub fn to_data(&self) -> Data {
                match self {
                    $(DataRef::$variant(values) => Data::$variant(values.to_vec()),)*
                }
            }
        }

        impl<'a> DataMut<'a> {
            /// The dtype of the elements.
            pub fn dtype(&self) -> DType {
                match self {
                    $(DataMut::$variant(_) => DType::$variant,)*
                }
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                match self {
                    $(DataMut::$variant(values) => values.len(),)*
                }
            }

            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// A shared view of the same elements.
            pub fn as_ref(&self) -> DataRef<'_> {
                match self {
                    $(DataMut::$variant(values) => DataRef::$variant(values),)*
                }
            }

            /// A shorter-lived exclusive view of the same elements.
            pub fn reborrow(&mut self) -> DataMut<'_> {
                match self {
                    $(DataMut::$variant(values) => DataMut::$variant(values),)*
                }
            }

            /// The address of the first element, for a backend's call boundary.
            pub fn as_mut_ptr(&mut self) -> *mut u8 {
                match self {
                    $(DataMut::$variant(values) => values.as_mut_ptr() as *mut u8,)*
                }
            }

            /// Overwrites the elements with `values` (as many as both have), rounded (floats)
            /// or wrapped (integers, after truncation towards zero) to the type.
            pub fn set_from_f64(&mut self, values: &[f64]) {
                match self {
                    $(DataMut::$variant(slots) => {
                        for (slot, &value) in slots.iter_mut().zip(values) {
                            *slot = <$ty as Element>::from_f64(value);
                        }
                    })*
                }
            }

            /// Fills every element with the bytes `byte` (a float's bits or an integer's).
            pub fn fill_bytes(&mut self, byte: u8) {
                match self {
                    $(DataMut::$variant(slots) => {
                        let value = <$ty>::from_ne_bytes([byte; std::mem::size_of::<$ty>()]);
                        slots.fill(value);
                    })*
                }
            }

            /// Copies `source`'s elements in; `false` (and nothing copied) when the dtypes or
            /// lengths differ.
            pub fn copy_from(&mut self, source: DataRef<'_>) -> bool {
                match (self, source) {
                    $((DataMut::$variant(slots), DataRef::$variant(values))
                        if slots.len() == values.len() => {
                        slots.copy_from_slice(values);
                        true
                    })*
                    _ => false,
                }
            }
        }

        $(
            impl From<Vec<$ty>> for Data {
                fn from(values: Vec<$ty>) -> Data {
                    Data::$variant(values)
                }
            }

            impl<'a> From<&'a [$ty]> for DataRef<'a> {
                fn from(values: &'a [$ty]) -> DataRef<'a> {
                    DataRef::$variant(values)
                }
            }

            impl<'a> From<&'a mut [$ty]> for DataMut<'a> {
                fn from(values: &'a mut [$ty]) -> DataMut<'a> {
                    DataMut::$variant(values)
                }
            }
        )*
    };
}

/// An element type's conversion from `f64`.
trait Element {
    /// `value` rounded (floats) or truncated towards zero and wrapped (integers).
    fn from_f64(value: f64) -> Self;
}

impl Element for f32 {
    fn from_f64(value: f64) -> f32 {
        value as f32
    }
}

impl Element for f64 {
    fn from_f64(value: f64) -> f64 {
        value
    }
}

macro_rules! integer_element {
    ($($ty:ty),*) => {
        $(impl Element for $ty {
            fn from_f64(value: f64) -> $ty {
                (value as i64) as $ty
            }
        })*
    };
}
integer_element!(u8, i8, i16, i32);

data_types!(F32(f32), F64(f64), U8(u8), I8(i8), I16(i16), I32(i32));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_know_their_dtype_and_length() {
        let mut data = Data::zeros(DType::U8, 5);
        assert_eq!(data.dtype(), DType::U8);
        assert_eq!(data.as_ref().len(), 5);
        assert_eq!(data.as_mut().dtype(), DType::U8);
        assert_eq!(Data::from(vec![1.5f32]).dtype(), DType::F32);
    }

    #[test]
    fn values_convert_through_f64_exactly_and_wrap_on_the_way_back() {
        let data = Data::from(vec![i32::MIN, -1, i32::MAX]);
        assert_eq!(data.to_f64(), vec![i32::MIN as f64, -1.0, i32::MAX as f64]);
        let wrapped = Data::from_f64(DType::U8, &[256.0, -1.0, 255.0]);
        assert_eq!(wrapped, Data::U8(vec![0, 255, 255]));
        let signed = Data::from_f64(DType::I8, &[128.0, -129.0]);
        assert_eq!(signed, Data::I8(vec![-128, 127]));
        assert_eq!(Data::from_f64(DType::F32, &[0.25]), Data::F32(vec![0.25]));
    }

    #[test]
    fn copies_refuse_other_dtypes_and_lengths() {
        let mut target = Data::zeros(DType::I16, 2);
        assert!(!target.as_mut().copy_from(DataRef::I16(&[1, 2, 3])));
        assert!(!target.as_mut().copy_from(DataRef::I32(&[1, 2])));
        assert!(target.as_mut().copy_from(DataRef::I16(&[1, 2])));
        assert_eq!(target, Data::I16(vec![1, 2]));
        target.as_mut().fill_bytes(0xAA);
        assert_eq!(target, Data::I16(vec![-21846, -21846]));
    }
}
