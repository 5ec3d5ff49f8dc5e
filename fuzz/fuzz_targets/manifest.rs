#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ocistore_testkit::fuzz::manifest(data);
});
