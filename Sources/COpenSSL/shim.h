#ifndef TALLY_COPENSSL_SHIM_H
#define TALLY_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/crypto.h>
#endif
