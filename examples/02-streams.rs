//! Streams, events, host callbacks, a refused raw address and the caching allocator, end to end.
//!
//! Run: `cargo run -p knpu --example 02-streams`

use knpu::{Event, Stream};

fn main() -> knpu::Result<()> {
    let dev = knpu::device(0)?;
    println!("running on device {} ({})", dev.ordinal(), dev.name());

    // Two streams: one produces, the other waits for it through an event.
    let producer = Stream::new(&dev)?;
    let consumer = Stream::new(&dev)?;
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let a = producer.from_slice(&x)?;
    let mut b = producer.alloc::<f32>(n)?;
    let start = Event::new(&dev);
    let produced = Event::new(&dev);
    start.record(&producer)?;
    knpu::ops::scale(&producer, 2.0, &a, &mut b)?;
    produced.record(&producer)?;
    producer.launch_host_func(|| println!("host callback: the producer's kernel has run"))?;

    consumer.wait_event(&produced)?;
    let mut c = consumer.alloc::<f32>(n)?;
    knpu::ops::add(&consumer, &a, &b, &mut c)?;
    consumer.synchronize()?;
    let got = c.to_vec()?;
    assert!(got.iter().enumerate().all(|(i, &v)| v == 3.0 * i as f32));
    println!("c = a + 2a checked over {n} elements");
    println!(
        "scale kernel took {:.3} ms of device time",
        Event::elapsed_ms(&start, &produced)?
    );

    // A raw address outside every live allocation is refused at the call, before anything
    // is queued, and the stream goes on.
    let mut junk = [0u8; 16];
    match consumer.memcpy_dtoh_raw(&mut junk, 0x40) {
        Err(e) => println!("reading address 0x40 fails as expected: {e}"),
        Ok(()) => println!("unexpected: address 0x40 was readable"),
    }
    let again = consumer.from_slice(&[1.0f32, 2.0])?;
    println!(
        "the stream still works after the refusal: {:?}",
        again.to_vec()?
    );

    // The caching allocator keeps freed blocks for reuse.
    drop((a, b, c, again));
    let stats = dev.memory_stats();
    println!(
        "allocator: {} B allocated (peak {} B), {} B reserved, {} B cached, {} allocations",
        stats.allocated_bytes,
        stats.peak_allocated_bytes,
        stats.reserved_bytes,
        stats.cached_bytes(),
        stats.num_allocs
    );
    Ok(())
}
