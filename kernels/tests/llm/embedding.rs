use crate::common::*;
use knpu_kernels::llm::{embedding, Element};
use knpu_kernels::{isa, Exec};

fn run<T: Element, O: Element>() {
    let mut rng = Rng::new(7);
    for &(vocab, dim) in &[(1usize, 1usize), (7, 17), (1000, 64), (65, 4097), (5, 0)] {
        let table: Vec<T> = random(&mut rng, vocab * dim, -1.0, 1.0);
        for &tokens in &[0usize, 1, 7, 65] {
            let ids: Vec<u32> = (0..tokens)
                .map(|_| rng.below(vocab as u64) as u32)
                .collect();
            for isa in isa::supported() {
                let mut out = vec![O::from_f32(f32::NAN); tokens * dim];
                let par = par_for(tokens * dim);
                embedding(
                    &table,
                    vocab,
                    dim,
                    &ids,
                    tokens,
                    &mut out,
                    Exec::new(isa, par),
                )
                .unwrap();
                for (t, &id) in ids.iter().enumerate() {
                    for c in 0..dim {
                        let want = O::from_f32(table[id as usize * dim + c].to_f32());
                        assert_eq!(
                            bytemuck::bytes_of(&out[t * dim + c]),
                            bytemuck::bytes_of(&want),
                            "embedding {}->{} {isa:?} vocab {vocab} dim {dim} token {t}",
                            name::<T>(),
                            name::<O>()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn embedding_gathers_and_converts() {
    for_dtype_pairs!(run);
}
