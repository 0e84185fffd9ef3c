fn main() {
    println!("challenge");
}
