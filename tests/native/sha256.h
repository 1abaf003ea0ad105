// sha256.h — the package's SHA-256 (csrc/include/detnoise/sha256.h) under the driver's namespace.
#pragma once

#include "detnoise/sha256.h"

namespace detnoise_test {
using detnoise::Sha256;
}  // namespace detnoise_test
