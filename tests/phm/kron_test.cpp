// Tests of the kernels in weft/core/ops/kron.hpp and kron_product.hpp (registered in phm_test):
// each against loop references, the vector bodies against the scalar ones (inner lengths that
// leave SIMD tails), and 1 vs 2 threads bit for bit on shapes large enough to be split.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "phm_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/ops/kron_product.hpp"
#include "weft/core/ops/thin_gemm.hpp"
#include "weft/core/parallel.hpp"

namespace weft_unit_phm_kron_test {

using namespace weft;
using weft::phm_test::check_scaled;
using weft::phm_test::reference_kron_sum;

namespace {

using weft::test::ThreadCountGuard;

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-13;
}

/// The full and low-rank products and their backward passes on one set of inputs.
template <class T>
struct ProductRun {
  Tensor<T> y, dx, dA, dB, db, ly, ldx, ldA, lds, ldt, ldb;
};

template <class T>
ProductRun<T> run_products(const ops::KronDims& m, const std::vector<Tensor<T>>& in, bool vectorize) {
  // in: x [N, k], A [n, n, n], B [n, p, q], s [n, p, r], t [n, r, q], b [d], g [N, d]
  const Tensor<T>&x = in[0], &A = in[1], &B = in[2], &s = in[3], &t = in[4], &b = in[5], &g = in[6];
  ProductRun<T> o;
  o.y = Tensor<T>(Shape{m.rows, m.d()});
  o.dx = Tensor<T>(x.shape());
  o.dA = Tensor<T>(A.shape());
  o.dB = Tensor<T>(B.shape());
  o.db = Tensor<T>(b.shape());
  std::vector<T> Z(std::size_t(ops::phm_workspace(m))), W(Z.size());
  ops::KronDims mf = m;
  mf.r = 0;
  ops::phm_forward(mf, x.data(), A.data(), B.data(), b.data(), o.y.data(), Z.data(), vectorize);
  ops::phm_backward(mf, g.data(), x.data(), A.data(), B.data(), Z.data(), W.data(), o.dx.data(), o.dA.data(),
                    o.dB.data(), o.db.data(), vectorize);
  o.ly = Tensor<T>(o.y.shape());
  o.ldx = Tensor<T>(x.shape());
  o.ldA = Tensor<T>(A.shape());
  o.lds = Tensor<T>(s.shape());
  o.ldt = Tensor<T>(t.shape());
  o.ldb = Tensor<T>(b.shape());
  std::vector<T> S(std::size_t(ops::lphm_factor_workspace(m))), dS(S.size());
  std::vector<T> U(std::size_t(ops::lphm_workspace(m))), V(U.size()), P(U.size()), Q(U.size());
  ops::lphm_forward(m, x.data(), A.data(), s.data(), t.data(), b.data(), o.ly.data(), S.data(), U.data(), V.data(),
                    vectorize);
  ops::lphm_backward(m, g.data(), x.data(), A.data(), S.data(), t.data(), U.data(), V.data(), P.data(), Q.data(),
                     dS.data(), o.ldx.data(), o.ldA.data(), o.lds.data(), o.ldt.data(), o.ldb.data(), vectorize);
  return o;
}

template <class T>
std::vector<Tensor<T>> random_inputs(const ops::KronDims& m, Rng& rng) {
  return {test::randn<T>(Shape{m.rows, m.k()}, rng), test::randn<T>(Shape{m.n, m.n, m.n}, rng),
          test::randn<T>(Shape{m.n, m.p, m.q}, rng), test::randn<T>(Shape{m.n, m.p, m.r}, rng),
          test::randn<T>(Shape{m.n, m.r, m.q}, rng), test::randn<T>(Shape{m.d()}, rng),
          test::randn<T>(Shape{m.rows, m.d()}, rng)};
}

template <class T>
std::vector<Tensor<T>> fields(const ProductRun<T>& r) {
  return {r.y, r.dx, r.dA, r.dB, r.db, r.ly, r.ldx, r.ldA, r.lds, r.ldt, r.ldb};
}

}  // namespace

TEST_CASE_TEMPLATE("phm/kron: kron_sum and its adjoint against loops, vector vs scalar bodies", T, float, double) {
  Rng rng(21);
  for (index_t n : {1, 2, 3, 4})
    for (index_t q : {1, 3, 7, 8, 17, 33}) {
      const index_t p = 5;
      auto A = test::randn<T>(Shape{n, n, n}, rng);
      auto B = test::randn<T>(Shape{n, p, q}, rng);
      auto dH = test::randn<T>(Shape{n * p, n * q}, rng);
      Tensor<T> H(Shape{n * p, n * q}), Hs(H.shape());
      ops::kron_sum(A.data(), B.data(), H.data(), n, p, q);
      ops::kron_sum_scalar(A.data(), B.data(), Hs.data(), n, p, q);
      INFO("n = ", n, ", q = ", q);
      check_scaled(H, reference_kron_sum(A, B), tol<T>(), "kron_sum");
      check_scaled(Hs, reference_kron_sum(A, B), tol<T>(), "kron_sum_scalar");
      // adjoint: <dH, kron_sum(A, B)> is bilinear, so dA[i][a][c] = <dH_(a,c), B_i> etc. by loops
      Tensor<double> dA_ref(A.shape()), dB_ref(B.shape());
      for (index_t i = 0; i < n; ++i)
        for (index_t a = 0; a < n; ++a)
          for (index_t c = 0; c < n; ++c)
            for (index_t u = 0; u < p; ++u)
              for (index_t v = 0; v < q; ++v) {
                const double g = double(dH(a * p + u, c * q + v));
                dA_ref(i, a, c) += g * double(B(i, u, v));
                dB_ref(i, u, v) += g * double(A(i, a, c));
              }
      Tensor<T> dA(A.shape(), T(0)), dB(B.shape(), T(0)), dAs(A.shape()), dBs(B.shape());
      ops::kron_sum_backward(dH.data(), A.data(), B.data(), dA.data(), dB.data(), n, p, q);
      ops::kron_sum_backward_scalar(dH.data(), A.data(), B.data(), dAs.data(), dBs.data(), n, p, q);
      check_scaled(dA, dA_ref, tol<T>() * 4, "kron_sum_backward dA");
      check_scaled(dB, dB_ref, tol<T>() * 4, "kron_sum_backward dB");
      check_scaled(dAs, dA_ref, tol<T>() * 4, "kron_sum_backward_scalar dA");
      check_scaled(dBs, dB_ref, tol<T>() * 4, "kron_sum_backward_scalar dB");
      // nullptr outputs are skipped
      ops::kron_sum_backward<T>(dH.data(), A.data(), B.data(), nullptr, nullptr, n, p, q);
    }
}

TEST_CASE_TEMPLATE("phm/kron: kron_mix and kron_mix_grad against loops, vector vs scalar bodies", T, float, double) {
  Rng rng(22);
  const index_t N = 3, n = 3;
  for (index_t L : {1, 2, 5, 16, 19}) {
    // in [N][n][n][L] (with a term axis), out [N][n][L] (terms summed), and the reverse
    auto in = test::randn<T>(Shape{N, n, n, L}, rng);
    auto A = test::randn<T>(Shape{n, n, n}, rng);
    const ops::MixStrides with_terms{n * n * L, n * L, L}, no_terms{n * L, L, 0};
    for (bool transposed : {false, true}) {
      Tensor<double> ref(Shape{N, n, L});
      for (index_t s = 0; s < N; ++s)
        for (index_t x = 0; x < n; ++x)
          for (index_t i = 0; i < n; ++i)
            for (index_t y = 0; y < n; ++y)
              for (index_t l = 0; l < L; ++l)
                ref(s, x, l) += double(transposed ? A(i, y, x) : A(i, x, y)) * double(in(s, y, i, l));
      Tensor<T> out(Shape{N, n, L}, T(7)), outs(Shape{N, n, L}, T(7));
      ops::kron_mix(N, n, L, A.data(), transposed, in.data(), with_terms, out.data(), no_terms, false);
      ops::kron_mix_scalar(N, n, L, A.data(), transposed, in.data(), with_terms, outs.data(), no_terms, false);
      INFO("L = ", L, ", transposed = ", transposed);
      check_scaled(out, ref, tol<T>(), "kron_mix");
      check_scaled(outs, ref, tol<T>(), "kron_mix_scalar");
      // accumulate adds onto what is there
      ops::kron_mix(N, n, L, A.data(), transposed, in.data(), with_terms, out.data(), no_terms, true);
      ref.array() *= 2.0;
      check_scaled(out, ref, tol<T>() * 2, "kron_mix accumulate");
    }
    auto right = test::randn<T>(Shape{N, n, L}, rng);
    Tensor<double> gref(Shape{n, n, n});
    for (index_t i = 0; i < n; ++i)
      for (index_t x = 0; x < n; ++x)
        for (index_t y = 0; y < n; ++y)
          for (index_t s = 0; s < N; ++s)
            for (index_t l = 0; l < L; ++l) gref(i, x, y) += double(in(s, x, i, l)) * double(right(s, y, l));
    Tensor<T> dA(Shape{n, n, n}), dAs(Shape{n, n, n});
    ops::kron_mix_grad(N, n, L, in.data(), with_terms, right.data(), no_terms, dA.data());
    ops::kron_mix_grad_scalar(N, n, L, in.data(), with_terms, right.data(), no_terms, dAs.data());
    check_scaled(dA, gref, tol<T>() * 4, "kron_mix_grad");
    check_scaled(dAs, gref, tol<T>() * 4, "kron_mix_grad_scalar");
  }
}

TEST_CASE_TEMPLATE("phm/kron: factored products, vector bodies vs scalar bodies", T, float, double) {
  Rng rng(23);
  for (index_t q : {1, 6, 17}) {
    ops::KronDims m;
    m.rows = 5;
    m.n = 4;
    m.p = 3;
    m.q = q;
    m.r = 2;
    auto in = random_inputs<T>(m, rng);
    const auto vec = fields(run_products(m, in, true)), sca = fields(run_products(m, in, false));
    for (std::size_t i = 0; i < vec.size(); ++i) check_scaled(vec[i], sca[i], tol<T>() * 8, "output " + std::to_string(i));
  }
}

TEST_CASE("phm/kron: 1 and 2 threads give the same bits (768 x 768, n = 4, 64 rows)") {
  ThreadCountGuard guard;
  Rng rng(24);
  ops::KronDims m;
  m.rows = 64;
  m.n = 4;
  m.p = 192;
  m.q = 192;
  m.r = 8;
  auto in = random_inputs<double>(m, rng);
  set_num_threads(1);
  const auto one = fields(run_products(m, in, true));
  Tensor<double> H1(Shape{768, 768});
  ops::kron_sum(in[1].data(), in[2].data(), H1.data(), 4, 192, 192);
  set_num_threads(2);
  const auto two = fields(run_products(m, in, true));
  Tensor<double> H2(Shape{768, 768});
  ops::kron_sum(in[1].data(), in[2].data(), H2.data(), 4, 192, 192);
  CHECK(test::identical(H1, H2));
  for (std::size_t i = 0; i < one.size(); ++i) CHECK_MESSAGE(test::identical(one[i], two[i]), "output ", i);
  // and they are the products: y against x H + b
  Tensor<double> y(Shape{64, 768});
  y.matrix() = in[0].matrix() * H1.matrix();
  y.matrix().rowwise() += in[5].matrix().row(0);
  check_scaled(one[0], y, 1e-12, "phm_forward vs x H + b");
}

TEST_CASE_TEMPLATE("phm/kron: thin products against loops, vector vs scalar bodies", T, float, double) {
  Rng rng(25);
  const index_t rows = 7;
  for (index_t M : {1, 3, 8, 9, 20})
    for (index_t L : {1, 5, 16, 37}) {
      auto X = test::randn<T>(Shape{rows, L}, rng);
      auto W = test::randn<T>(Shape{M, L}, rng);
      auto C = test::randn<T>(Shape{rows, M}, rng);
      Tensor<double> dots(Shape{rows, M}), comb(Shape{rows, L}), accu(Shape{M, L});
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < M; ++c)
          for (index_t l = 0; l < L; ++l) {
            dots(r, c) += double(X(r, l)) * double(W(c, l));
            comb(r, l) += double(C(r, c)) * double(W(c, l));
            accu(c, l) += double(C(r, c)) * double(X(r, l));
          }
      INFO("M = ", M, ", L = ", L);
      for (bool vec : {true, false}) {
        Tensor<T> d(Shape{rows, M}, T(3)), cb(Shape{rows, L}, T(3)), ac(Shape{M, L});
        (vec ? ops::thin_dots<T> : ops::thin_dots_scalar<T>)(rows, L, M, X.data(), W.data(), d.data(), false);
        (vec ? ops::thin_combine<T> : ops::thin_combine_scalar<T>)(rows, L, M, C.data(), W.data(), cb.data(), false);
        (vec ? ops::thin_accumulate<T> : ops::thin_accumulate_scalar<T>)(rows, L, M, C.data(), X.data(), ac.data());
        check_scaled(d, dots, tol<T>() * 4, vec ? "thin_dots" : "thin_dots_scalar");
        check_scaled(cb, comb, tol<T>() * 4, vec ? "thin_combine" : "thin_combine_scalar");
        check_scaled(ac, accu, tol<T>() * 4, vec ? "thin_accumulate" : "thin_accumulate_scalar");
        // accumulating forms add onto what is there
        (vec ? ops::thin_dots<T> : ops::thin_dots_scalar<T>)(rows, L, M, X.data(), W.data(), d.data(), true);
        (vec ? ops::thin_combine<T> : ops::thin_combine_scalar<T>)(rows, L, M, C.data(), W.data(), cb.data(), true);
        (vec ? ops::thin_accumulate<T> : ops::thin_accumulate_scalar<T>)(rows, L, M, C.data(), X.data(), ac.data());
        dots.array() *= 2.0;
        comb.array() *= 2.0;
        accu.array() *= 2.0;
        check_scaled(d, dots, tol<T>() * 8, "thin_dots accumulate");
        check_scaled(cb, comb, tol<T>() * 8, "thin_combine accumulate");
        check_scaled(ac, accu, tol<T>() * 8, "thin_accumulate twice");
        dots.array() *= 0.5;
        comb.array() *= 0.5;
        accu.array() *= 0.5;
      }
    }
}

TEST_CASE("phm/kron: thin products, 1 and 2 threads give the same bits") {
  ThreadCountGuard guard;
  Rng rng(26);
  const index_t rows = 4096, L = 777, M = 4;
  auto X = test::randn<float>(Shape{rows, L}, rng);
  auto W = test::randn<float>(Shape{M, L}, rng);
  auto C = test::randn<float>(Shape{rows, M}, rng);
  std::vector<Tensor<float>> res[2];
  for (int th : {1, 2}) {
    set_num_threads(th);
    Tensor<float> d(Shape{rows, M}), cb(Shape{rows, L}), ac(Shape{M, L});
    ops::thin_dots(rows, L, M, X.data(), W.data(), d.data(), false);
    ops::thin_combine(rows, L, M, C.data(), W.data(), cb.data(), false);
    ops::thin_accumulate(rows, L, M, C.data(), X.data(), ac.data());
    res[th - 1] = {d, cb, ac};
  }
  for (std::size_t i = 0; i < 3; ++i) CHECK_MESSAGE(test::identical(res[0][i], res[1][i]), "output ", i);
}

}  // namespace weft_unit_phm_kron_test
