#ifndef TALLY_CSODIUM_SHIM_H
#define TALLY_CSODIUM_SHIM_H
#include <sodium.h>
#endif
