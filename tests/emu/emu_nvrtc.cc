/* emu_nvrtc.cc: compiles tests/emu/test_kernels.cu, test_mma.cu and test_data.cu (with the device library
 * from runtime/, and no CUDA include directory: the library needs no header) with NVRTC for
 * sm_80 and sm_90, reads registers and spill bytes from ptxas's verbose log, and fails on an
 * error or any spill. */
#include <nvrtc.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness.h"

/* Compiles tests/emu/FILE for sm_80 and sm_90: no error, no spill, `kernels` entry functions. */
static void compile_file(const std::string &src_dir, const char *file, int want_kernels) {
    std::ifstream f(src_dir + "/tests/emu/" + file);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string src = ss.str(), inc = "-I" + src_dir + "/runtime";
    CHECK_MSG(!src.empty(), "cannot read %s/tests/emu/%s", src_dir.c_str(), file);
    for (const char *arch : {"sm_80", "sm_90"}) {
        nvrtcProgram prog;
        CHECK(nvrtcCreateProgram(&prog, src.c_str(), file, 0, nullptr, nullptr) == NVRTC_SUCCESS);
        std::string arch_opt = std::string("--gpu-architecture=") + arch;
        const char *opts[] = {arch_opt.c_str(), inc.c_str(), "--std=c++17", "-Xptxas=-v"};
        nvrtcResult r = nvrtcCompileProgram(prog, 4, opts);
        size_t n = 0, cubin = 0;
        nvrtcGetProgramLogSize(prog, &n);
        std::string log(n, '\0');
        nvrtcGetProgramLog(prog, &log[0]);
        if (r == NVRTC_SUCCESS) nvrtcGetCUBINSize(prog, &cubin);
        CHECK_MSG(r == NVRTC_SUCCESS && cubin > 0, "%s %s: %s\n%s", file, arch, nvrtcGetErrorString(r), log.c_str());
        nvrtcDestroyProgram(&prog);
        /* ptxas -v: "Compiling entry function 'k'", then "N bytes spill stores, M bytes spill
         * loads" and "Used R registers" */
        std::regex entry("Compiling entry function '([A-Za-z0-9_]+)'"), spill("(\\d+) bytes spill stores, (\\d+) bytes spill loads"),
            regs("Used (\\d+) registers");
        std::istringstream lines(log);
        std::string line, kernel;
        int kernels = 0;
        while (std::getline(lines, line)) {
            std::smatch m;
            if (std::regex_search(line, m, entry)) kernel = m[1], kernels++;
            if (std::regex_search(line, m, spill))
                CHECK_MSG(m[1] == "0" && m[2] == "0", "%s %s spills: %s", arch, kernel.c_str(), line.c_str());
            if (std::regex_search(line, m, regs)) printf("%s %-16s %3s registers\n", arch, kernel.c_str(), m[1].str().c_str());
        }
        CHECK_MSG(kernels == want_kernels, "%s %s: %d kernels compiled, expected %d", file, arch, kernels, want_kernels);
        printf("%s %s: cubin %zu bytes\n", file, arch, cubin);
    }
}

int main(void) {
    std::string src_dir = test_env("DEITC_SOURCE_DIR");
    compile_file(src_dir, "test_kernels.cu", 12);
    compile_file(src_dir, "test_mma.cu", 5); /* every dc_mma.cuh / dc_memory.cuh helper */
    compile_file(src_dir, "test_data.cu", 5); /* dc_data.cuh: crop (u8, f32, f16, bf16), normalize */
    return test_result();
}
