#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_provider_core::fuzzing::tool_search(data));
