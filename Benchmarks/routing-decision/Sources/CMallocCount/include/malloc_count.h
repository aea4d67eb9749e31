#pragma once
/// Heap allocations made by this process so far (malloc, calloc, realloc and the aligned
/// variants), counted by this target's replacements of the C allocator's entry points.
unsigned long sluice_malloc_count(void);
