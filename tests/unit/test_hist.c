/* Unit tests for common/hist: quantiles within the stated 12.5%. */
#include "common/runtime/hist.h"
#include "sf_test.h"

TEST(quantiles) {
    static sf_hist_t h;
    for (uint64_t v = 1; v <= 100000; v++) sf_hist_add(&h, v);
    CHECK_EQ_INT(h.count, 100000);
    double p50 = (double)sf_hist_quantile(&h, 0.5), p99 = (double)sf_hist_quantile(&h, 0.99);
    CHECK(p50 >= 50000 && p50 <= 50000 * 1.125);
    CHECK(p99 >= 99000 && p99 <= 100000);
    CHECK_EQ_INT(sf_hist_quantile(&h, 1.0), 100000);
    static sf_hist_t small;
    for (int i = 0; i < 7; i++) sf_hist_add(&small, 3);
    CHECK_EQ_INT(sf_hist_quantile(&small, 0.5), 3);
    static sf_hist_t empty;
    CHECK_EQ_INT(sf_hist_quantile(&empty, 0.5), 0);
    sf_hist_merge(&empty, &small);
    CHECK_EQ_INT(empty.count, 7);
}

int main(void) {
    SF_RUN(quantiles);
    SF_DONE();
}
